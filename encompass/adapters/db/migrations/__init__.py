"""Alembic migrations: the authority for the live schema (run by ``encompass migrate``)."""
