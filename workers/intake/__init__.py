"""``python -m workers.intake``: see ``__main__.py``."""
