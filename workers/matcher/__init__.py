"""``python -m workers.matcher``: see ``__main__.py``."""
