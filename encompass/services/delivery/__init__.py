"""Delivery: a released notice sealed to its recipients and sent, one attempt at a time."""
