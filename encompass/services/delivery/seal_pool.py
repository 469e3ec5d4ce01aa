"""Sealing off the event loop: HPKE and Ed25519 for a large batch in worker processes.

Opt-in (``ENCOMPASS_SEAL_WORKERS``, 0 by default). Sealing is nearly all the CPU a release
costs (about 0.2 ms an envelope) and runs on the dispatcher's event loop, which meanwhile
posts no webhook and reads no message. With spare cores, worker processes take it off the
loop: the CPU per envelope stays the same (plus a little to hand the work over), the time
a burst takes falls. On a machine whose cores are busy anyway it gains nothing, hence the
default.

Each worker gets the signing key once, when it starts (over the pipe to its own child
process, never through the broker or the database), and the recipients' public keys as
raw bytes; it returns each envelope's JSON and hash. Small batches (``MIN_POOLED``) are
sealed in the process, where handing over would cost more than it saves. A worker that dies is
replaced, and that batch is sealed in the process: nothing is lost or sealed twice, the
release's transaction is still open.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from encompass.domain.envelope import NoticeContent, RecipientPublicKey, seal_hashed

log = structlog.get_logger()

# Envelopes below which a batch is sealed in the process: handing it over would cost
# more than it saves.
MIN_POOLED: Final = 16


@dataclass(frozen=True, slots=True)
class SealJob:
    """One envelope to seal: the content, to whom, with which key (raw public bytes)."""

    content: NoticeContent
    recipient_id: str
    x25519: bytes
    mlkem768: bytes | None

    @classmethod
    def of(cls, content: NoticeContent, recipient_id: str, key: RecipientPublicKey) -> SealJob:
        mlkem = None if key.mlkem768 is None else key.mlkem768.public_bytes_raw()
        return cls(content, recipient_id, key.x25519.public_bytes_raw(), mlkem)


# The worker process's state: its signing key and the recipients' keys it has parsed.
_signing_key: Ed25519PrivateKey | None = None
_keys: dict[tuple[bytes, bytes | None], RecipientPublicKey] = {}


def _start_worker(signing_key: bytes) -> None:
    global _signing_key
    _signing_key = Ed25519PrivateKey.from_private_bytes(signing_key)


def _key(
    job: SealJob, cache: dict[tuple[bytes, bytes | None], RecipientPublicKey]
) -> RecipientPublicKey:
    found = cache.get((job.x25519, job.mlkem768))
    if found is None:
        mlkem = None if job.mlkem768 is None else MLKEM768PublicKey.from_public_bytes(job.mlkem768)
        found = RecipientPublicKey(X25519PublicKey.from_public_bytes(job.x25519), mlkem)
        cache[(job.x25519, job.mlkem768)] = found
    return found


def seal_jobs(
    jobs: Sequence[SealJob], now: datetime, signing_key: Ed25519PrivateKey | None = None
) -> list[tuple[str, str]]:
    """Seal each job: (envelope JSON, envelope hash), in order. In a worker the signing
    key is the one it was started with."""
    key = signing_key or _signing_key
    if key is None:
        raise RuntimeError("a sealing worker started without its signing key")
    # A worker keeps the keys it parsed for its next batches; the process does not.
    cache = _keys if signing_key is None else {}
    out: list[tuple[str, str]] = []
    for job in jobs:
        envelope, digest = seal_hashed(
            job.content,
            notice_id=job.content.notice_id,
            recipient_id=job.recipient_id,
            recipient_public_key=_key(job, cache),
            signing_key=key,
            now=now,
        )
        out.append((envelope.model_dump_json(), digest))
    return out


class SealPool:
    """Worker processes that seal; :meth:`close` it when done."""

    def __init__(self, workers: int, signing_key: Ed25519PrivateKey) -> None:
        if workers < 1:
            raise ValueError("a seal pool needs at least one worker")
        self._workers, self._signing_key = workers, signing_key
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # Spawned, not forked: a fork would copy the event loop, the database pool and the
        # broker connection into a process that must never use them.
        return ProcessPoolExecutor(
            self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self._signing_key.private_bytes_raw(),),
        )

    async def seal(self, jobs: Sequence[SealJob], now: datetime) -> list[tuple[str, str]]:
        """Seal ``jobs`` (in order) in the workers."""
        if not jobs:
            return []
        loop = asyncio.get_running_loop()
        # A few chunks per worker, so one slow chunk does not leave the others idle.
        size = -(-len(jobs) // (self._workers * 2))
        chunks = [jobs[start : start + size] for start in range(0, len(jobs), size)]
        try:
            parts = await asyncio.gather(
                *(loop.run_in_executor(self._pool, seal_jobs, chunk, now) for chunk in chunks)
            )
        except BrokenProcessPool:
            log.warning("sealing.pool_broken", outcome="restarted; this batch sealed in process")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
            return seal_jobs(jobs, now, self._signing_key)
        return [sealed for part in parts for sealed in part]

    async def close(self) -> None:
        """Stop the workers (waiting for them off the event loop)."""
        await asyncio.to_thread(self._pool.shutdown, True, cancel_futures=True)
