"""``python -m workers.dispatcher``: the dispatcher worker alone (``encompass worker``).

The worker itself is ``encompass/workers/dispatcher.py``; this module only starts it.
"""

from __future__ import annotations

import asyncio

from encompass.workers.main import run_workers

if __name__ == "__main__":
    asyncio.run(run_workers(["dispatcher"]))
