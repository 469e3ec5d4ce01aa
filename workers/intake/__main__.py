"""``python -m workers.intake``: the intake worker alone (as ``encompass worker intake``).

The worker itself is ``encompass/workers/intake.py``; this module only starts it.
"""

from __future__ import annotations

import asyncio

from encompass.workers.main import run_workers

if __name__ == "__main__":
    asyncio.run(run_workers(["intake"]))
