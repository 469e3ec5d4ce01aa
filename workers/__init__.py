"""Entry points kept for ``python -m workers.NAME``; the workers live in ``encompass/workers/``."""
