"""Prometheus metrics, one registry per running service (tests build their own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.incidents_accepted = Counter(
            "encompass_incidents_accepted_total", "Incident versions accepted", ["force"],
            registry=self.registry)
        self.incidents_refused = Counter(
            "encompass_incidents_refused_total", "Incident reports refused", ["reason"],
            registry=self.registry)
        self.http_latency = Histogram(
            "encompass_http_request_seconds", "HTTP request latency", ["route"],
            registry=self.registry)
