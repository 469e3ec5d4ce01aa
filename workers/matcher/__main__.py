"""``python -m workers.matcher``: the matcher worker alone (as ``encompass worker matcher``).

The worker itself is ``encompass/workers/matcher.py``; this module only starts it.
"""

from __future__ import annotations

import asyncio

from encompass.workers.main import run_workers

if __name__ == "__main__":
    asyncio.run(run_workers(["matcher"]))
