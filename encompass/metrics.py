"""Prometheus metrics, one registry per running service (tests build their own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.incidents_accepted = Counter(
            "encompass_incidents_accepted_total",
            "Incident versions accepted",
            ["force"],
            registry=self.registry,
        )
        self.incidents_refused = Counter(
            "encompass_incidents_refused_total",
            "Incident reports refused",
            ["reason"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "encompass_http_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=self.registry,
        )
        # The receiving side and the review queue (portal, acknowledgements, admins).
        self.acknowledgements = Counter(
            "encompass_acknowledgements_total",
            "Signed acknowledgements recorded",
            ["kind"],
            registry=self.registry,
        )
        self.acknowledgements_refused = Counter(
            "encompass_acknowledgements_refused_total",
            "Acknowledgements refused",
            ["reason"],
            registry=self.registry,
        )
        self.portal_envelopes_served = Counter(
            "encompass_portal_envelopes_served_total",
            "Envelopes handed over by the portal",
            registry=self.registry,
        )
        self.review_items = Gauge(
            "encompass_review_queue_items",
            "Items waiting in the review queue",
            registry=self.registry,
        )
        self.review_oldest_age = Gauge(
            "encompass_review_queue_oldest_age_seconds",
            "How long the oldest review item has waited (0 when the queue is empty)",
            registry=self.registry,
        )
        self.review_resolved = Counter(
            "encompass_review_resolved_total",
            "Review items resolved",
            ["resolution"],
            registry=self.registry,
        )
        # The door: refused sign-ins (no token text, ever) and requests over a rate limit.
        self.auth_failures = Counter(
            "encompass_auth_failures_total",
            "Requests refused for their credential (missing, invalid, revoked, wrong kind)",
            ["reason"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "encompass_rate_limited_total",
            "Requests refused with 429, by which limit",
            ["limit"],
            registry=self.registry,
        )
