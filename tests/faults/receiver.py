"""The settings' side in the fault tests: a webhook receiver as its own OS process.

It records every request by its ``Idempotency-Key`` (time, answer, the notice it carried)
and keeps one copy per key, as ``schemas/webhook.md`` asks of receivers. Its behaviour is
set over HTTP: ``POST /control {"mode": "ok" | "fail" | "timeout", "latency": s}``;
``GET /records`` returns everything; ``POST /reset`` forgets it.

- ``ok``: answer 200 (after ``latency``); the first request of a key is *applied*;
- ``fail``: answer 500 and apply nothing;
- ``timeout``: apply the request, then answer only after ``hang`` seconds (longer than the
  sender's timeout), so the sender retries a request that did arrive: the documented case
  of a redelivered key.

Run: ``python -m tests.faults.receiver --port PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from aiohttp import web

IDEMPOTENCY_HEADER = "Idempotency-Key"


class Receiver:
    def __init__(self) -> None:
        self.mode = "ok"
        self.latency = 0.0
        self.hang = 5.0
        self.requests: list[dict[str, Any]] = []
        self.applied: dict[str, dict[str, Any]] = {}

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        key = request.headers.get(IDEMPOTENCY_HEADER, "")
        try:
            notice_id = str(json.loads(body).get("notice_id", ""))
        except (ValueError, AttributeError):
            notice_id = ""
        mode, at = self.mode, time.time()
        self.requests.append(
            {
                "key": key,
                "notice_id": notice_id,
                "at": at,
                "mode": mode,
                "recipient": request.match_info["recipient"],
                "kind": request.headers.get("X-Encompass-Envelope-Kind", ""),
            }
        )
        if mode == "fail":
            return web.json_response({"error": "injected"}, status=500)
        if key not in self.applied:
            self.applied[key] = {"key": key, "notice_id": notice_id, "at": at}
        if mode == "timeout":
            await asyncio.sleep(self.hang)
        elif self.latency:
            await asyncio.sleep(self.latency)
        return web.json_response({"stored": key})

    async def control(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.mode = str(data.get("mode", self.mode))
        self.latency = float(data.get("latency", self.latency))
        self.hang = float(data.get("hang", self.hang))
        return web.json_response({"mode": self.mode})

    async def records(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"requests": self.requests, "applied": list(self.applied.values())}
        )

    async def reset(self, request: web.Request) -> web.Response:
        self.requests, self.applied = [], {}
        self.mode, self.latency = "ok", 0.0
        return web.json_response({"reset": True})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/{recipient}", receiver.hook)
    app.router.add_post("/control", receiver.control)
    app.router.add_get("/records", receiver.records)
    app.router.add_post("/reset", receiver.reset)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
