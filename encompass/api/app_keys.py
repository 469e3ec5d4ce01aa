"""Typed keys for what the app carries (aiohttp's AppKey)."""

from __future__ import annotations

from aiohttp import web

from encompass.bootstrap import Container
from encompass.metrics import Metrics

CONTAINER = web.AppKey("container", Container)
METRICS = web.AppKey("metrics", Metrics)
