"""``python -m workers.dispatcher``: see ``__main__.py``."""
