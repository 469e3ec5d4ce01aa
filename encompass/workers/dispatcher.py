"""The dispatcher worker: releases due notices, relays the outbox, sweeps, and delivers.

A loop every ``ENCOMPASS_DISPATCH_INTERVAL`` seconds (0.5 by default) releases what is due
and hands the outbox to the broker, and every few seconds sweeps stuck and overdue notices
and publishes again the incident versions no matcher processed (``requeue_stale``);
a consumer on ``deliveries`` posts webhooks and sends e-mail pointers; the loop also sends
the overdue and failed-delivery e-mails the sweeps and deliveries queued. All state is in the
database, so any number of dispatchers may run, and one that restarts loses nothing.

Run it with ``encompass worker dispatcher`` or ``python -m workers.dispatcher``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from encompass.adapters.broker import Consumer
from encompass.adapters.smtp import SmtpSender
from encompass.adapters.topology import DELIVERIES
from encompass.bootstrap import Container
from encompass.services.delivery.attempt import DeliverEnvelope, delivery_backoff
from encompass.services.delivery.seal_pool import SealPool
from encompass.services.intake.requeue_stale import requeue_stale
from encompass.services.receiving.alert_mail import relay_mail
from encompass.services.receiving.sweep_stuck import SweepPolicy, sweep
from encompass.services.records.retention import forget_purged, purge_due
from encompass.services.scheduling.outbox import relay_outbox
from encompass.services.scheduling.release_due import release_due
from encompass.workers.runner import run_batch_consumer

log = structlog.get_logger()

RELEASE_BATCH = 200
DELIVERY_BATCH = 64  # deliveries recorded in one transaction, at most
DELIVERY_BATCHES = 4  # delivery batches in flight at once
# Messages a dispatcher holds unacknowledged. One message may name up to 64 envelopes, so
# the consumer's default (a batch size of messages per batch) would let one dispatcher
# take a whole morning's burst while the others wait; this keeps every batch fed and
# leaves the rest on the queue for the next dispatcher.
DELIVERY_PREFETCH = 4 * (DELIVERY_BATCHES + 1)
# The runner's own limit on delivery attempts: a backstop above the handler's, which
# counts attempts in the database, retries until the setting's day starts and records
# the failure itself.
DELIVERY_RUNNER_LIMIT = 250
SWEEP_EVERY = 5.0  # seconds: escalation is by the minute, no need to scan every tick
PURGE_EVERY = 24 * 3600.0  # seconds: retention counts in days


class Dispatcher:
    """The running worker; ``cancel()`` stops the loop and the consumer cleanly."""

    def __init__(
        self,
        container: Container,
        *,
        interval: float,
        sweep_every: float,
        policy: SweepPolicy,
        purge_every: float = PURGE_EVERY,
    ) -> None:
        self._container = container
        self._interval, self._sweep_every, self._policy = interval, sweep_every, policy
        self._purge_every = purge_every
        self._loop: asyncio.Task[None] | None = None
        self._purge: asyncio.Task[None] | None = None
        self._mailing: asyncio.Task[None] | None = None
        self._consumer: Consumer | None = None
        self._mail: SmtpSender | None = None
        self._sealer: SealPool | None = None

    async def start(self, *, backoff: Callable[[int], float], mail: SmtpSender | None) -> None:
        settings = self._container.settings
        self._mail = mail
        if settings.seal_workers:
            self._sealer = SealPool(settings.seal_workers, self._container.signing_key)
        handler = DeliverEnvelope(
            self._container.sessions,
            self._container.clock,
            self._container.webhook,
            mail,
            max_attempts=settings.delivery_max_attempts,
        )
        # Deliveries in micro-batches: read together, sent side by side, recorded in one
        # transaction, each acked after it; a few batches at once, so that one slow
        # endpoint holds up only its own batch.
        self._consumer = await run_batch_consumer(
            self._container.broker,
            DELIVERIES,
            handler.batch,
            batch_size=min(settings.batch_size, DELIVERY_BATCH),
            batch_wait=settings.batch_wait_ms / 1000,
            concurrency=DELIVERY_BATCHES,
            max_attempts=DELIVERY_RUNNER_LIMIT,
            backoff=backoff,
            prefetch=DELIVERY_PREFETCH,
            # A batch is counted in envelopes: one message may name a whole batch.
            weight=handler.weight,
        )
        self._loop = asyncio.create_task(self._run(), name="dispatcher-loop")
        self._purge = asyncio.create_task(self._purge_daily(), name="dispatcher-retention")
        self._mailing = asyncio.create_task(self._send_mail(), name="dispatcher-mail")

    async def _send_mail(self) -> None:
        """Send the overdue and failed-delivery e-mails queued in the database; a loop of
        its own, so a slow SMTP server never delays a release."""
        c = self._container
        while True:
            sent = 0
            try:
                sent = await relay_mail(c.sessions, self._mail, c.clock)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("dispatcher.mail_failed", error=type(exc).__name__)
            if not sent:
                await asyncio.sleep(self._interval)

    async def _purge_daily(self) -> None:
        """Retention (``services/records/retention.py``) at start and then once a day, in batches
        until nothing more is due."""
        c = self._container
        while True:
            try:
                purged = 0
                while batch := await purge_due(
                    c.sessions, c.clock, vacuum=False, retention_days=c.settings.retention_days
                ):
                    purged += len(batch)
                if purged:
                    await forget_purged(c.sessions)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("dispatcher.purge_failed", error=type(exc).__name__)
            await asyncio.sleep(self._purge_every)

    async def tick(self) -> bool:
        """One round: release a batch, relay the outbox. True when more may be due now."""
        c = self._container
        released = await release_due(
            c.sessions, c.clock, c.signing_key, limit=RELEASE_BATCH, sealer=self._sealer
        )
        await relay_outbox(c.sessions, c.broker, c.clock)
        return released.notices + released.held >= RELEASE_BATCH

    async def _run(self) -> None:
        c = self._container
        last_sweep = -self._sweep_every
        loop = asyncio.get_running_loop()
        while True:
            busy = False
            try:
                busy = await self.tick()
                if loop.time() - last_sweep >= self._sweep_every:
                    last_sweep = loop.time()
                    await sweep(c.sessions, c.clock, c.signing_key, policy=self._policy)
                    await relay_outbox(c.sessions, c.broker, c.clock)
                    await requeue_stale(c.sessions, c.broker, c.clock)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The database or broker is away: say so (class only) and try again.
                log.error("dispatcher.tick_failed", error=type(exc).__name__)
            if not busy:
                await asyncio.sleep(self._interval)

    async def cancel(self) -> None:
        """Stop the loop (a step cut short rolls its transaction back, so nothing is left
        half done), then the consumer (in-flight deliveries finish or go back to the
        queue), then the HTTP client's connections (the container's sender opens a new
        client if it is used again)."""
        for task in (self._loop, self._purge, self._mailing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._loop = self._purge = self._mailing = None
        if self._consumer is not None:
            await self._consumer.cancel()
            self._consumer = None
        if self._sealer is not None:
            await self._sealer.close()
            self._sealer = None
        await self._container.webhook.close()


def mailer_for(container: Container) -> SmtpSender | None:
    """The SMTP sender when ``ENCOMPASS_SMTP_HOST`` is set, else None (portal only)."""
    return container.mailer


async def start(
    container: Container,
    *,
    backoff: Callable[[int], float] | None = None,
    mail: SmtpSender | None = None,
    interval: float | None = None,
    sweep_every: float = SWEEP_EVERY,
    policy: SweepPolicy | None = None,
) -> Dispatcher:
    """Start the loop and the ``deliveries`` consumer; the returned worker's ``cancel()``
    stops both. Tests pass a near-zero ``backoff``, their own ``mail`` and ``policy``."""
    worker = Dispatcher(
        container,
        interval=interval or container.settings.dispatch_interval,
        sweep_every=sweep_every,
        policy=policy or SweepPolicy(),
    )
    await worker.start(backoff=backoff or delivery_backoff, mail=mail or container.mailer)
    return worker
