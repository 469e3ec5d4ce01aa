"""Typed keys for what the app carries (aiohttp's AppKey)."""

from __future__ import annotations

from aiohttp import web

from encompass.adapters.db.tables import Force
from encompass.bootstrap import Container
from encompass.metrics import Metrics
from encompass.services.access.callers import Caller
from encompass.services.access.token_cache import SharedLookups, TokenCache
from encompass.services.intake.ingest_batch import IngestBatcher

CONTAINER = web.AppKey("container", Container)
METRICS = web.AppKey("metrics", Metrics)
# Forces' tokens, looked up at most once a second (services/access/token_cache.py).
FORCE_TOKENS = web.AppKey("force_tokens", TokenCache[Force])
# Lookups of one token made at once, shared (services/access/token_cache.py).
TOKEN_LOOKUPS = web.AppKey("token_lookups", SharedLookups[Caller | None])
# Reports arriving together, stored in one transaction (services/intake/ingest_batch.py).
INGEST = web.AppKey("ingest", IngestBatcher)
