"""Scheduling and release: notices created at their release time and released when due."""
