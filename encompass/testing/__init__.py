"""Test support shipped with the package: the synthetic population of children."""
