"""Prometheus metrics, one registry per running service (tests build their own)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from encompass.services.admin.figures import LATENCY_BUCKETS, Figures, Latency


class DatabaseFigures(Collector):
    """What the workers did, as last read from the database and the broker (set by the
    ``/metrics`` handler before each scrape; nothing until the first read)."""

    def __init__(self) -> None:
        self.figures: Figures | None = None

    def collect(self) -> Iterator[Metric]:
        f = self.figures
        if f is None:
            return
        yield CounterMetricFamily(
            "encompass_incidents_received",
            "Incident reports (each version) received, over HTTP and AMQP",
            value=f.incidents_received,
        )
        notices = GaugeMetricFamily("encompass_notices", "Notices by status", labels=["status"])
        for status, count in f.notices_by_status.items():
            notices.add_metric([status], count)
        yield notices
        yield GaugeMetricFamily(
            "encompass_notices_overdue",
            "Notices not acknowledged by the start of the setting's day, still unanswered",
            value=f.overdue,
        )
        attempts = CounterMetricFamily(
            "encompass_delivery_attempts",
            "Delivery attempts by channel and outcome",
            labels=["channel", "outcome"],
        )
        for (channel, outcome), count in sorted(f.delivery_attempts.items()):
            attempts.add_metric([channel, outcome], count)
        yield attempts
        yield _histogram(
            "encompass_release_to_delivery_seconds",
            "From a notice's release time to its delivery",
            f.release_to_delivery,
        )
        yield _histogram(
            "encompass_release_to_ack_seconds",
            "From a notice's release time to its first acknowledgement",
            f.release_to_ack,
        )
        dead = GaugeMetricFamily(
            "encompass_dead_letters", "Messages in each work queue's dead letters", labels=["queue"]
        )
        for queue, depth in f.dead_letters.items():
            dead.add_metric([queue], depth)
        yield dead


def _histogram(name: str, documentation: str, latency: Latency) -> HistogramMetricFamily:
    buckets = [(str(float(b)), n) for b, n in zip(LATENCY_BUCKETS, latency.buckets, strict=True)]
    return HistogramMetricFamily(
        name,
        documentation,
        buckets=[*buckets, ("+Inf", latency.count)],
        sum_value=latency.total_seconds,
    )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.database = DatabaseFigures()
        self.registry.register(self.database)
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
