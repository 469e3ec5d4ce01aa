"""Matching: each reported child placed at its settings, or put to a person for review."""
