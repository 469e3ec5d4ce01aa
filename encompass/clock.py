"""The service's clock: real time, or real time shifted to start at ``ENCOMPASS_NOW``.

Drills, the demo and tests set a start instant; the clock then runs at normal speed from
there. ``advance`` exists for the demo and tests only, to jump to the morning.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self, start: datetime | None = None) -> None:
        self._offset = timedelta(0)
        if start is not None:
            self._offset = start.astimezone(UTC) - datetime.now(UTC)

    def now(self) -> datetime:
        """The current instant, aware, in UTC."""
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> None:
        self._offset += delta

    def set(self, instant: datetime) -> None:
        self._offset = instant.astimezone(UTC) - datetime.now(UTC)

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()
