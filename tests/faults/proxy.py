"""A TCP proxy in the test's event loop that can delay, drop, reset and black-hole.

- ``delay(seconds)``: every chunk waits that long before it is forwarded;
- ``drop()``: every open connection is closed (FIN) and new ones are closed at once;
- ``reset()``: the same with a TCP reset (RST) instead of a close;
- ``blackhole()``: nothing is forwarded either way and new connections hang unanswered,
  as when packets vanish; ``heal()`` lets the held bytes through, as TCP retransmission
  would after a short partition;
- ``heal()``: back to forwarding at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Literal

Mode = Literal["pass", "delay", "drop", "reset", "blackhole"]


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode: Mode = "pass"
        self.latency = 0.0
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        self.heal()
        if self._server is not None:
            self._server.close()
        self._cut(reset=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def delay(self, seconds: float) -> None:
        self.mode, self.latency = "delay", seconds
        self._flowing.set()

    def drop(self) -> None:
        self.mode = "drop"
        self._cut(reset=False)

    def reset(self) -> None:
        self.mode = "reset"
        self._cut(reset=True)

    def blackhole(self) -> None:
        self.mode = "blackhole"
        self._flowing.clear()

    def heal(self) -> None:
        self.mode, self.latency = "pass", 0.0
        self._flowing.set()

    def _cut(self, *, reset: bool) -> None:
        for writer in list(self._open):
            _close(writer, reset=reset)
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode in ("drop", "reset"):
            _close(writer, reset=self.mode == "reset")
            return
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _close(writer, reset=True)
            return
        self._open.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (writer, up_writer):
                if w in self._open:
                    self._open.discard(w)
                    _close(w, reset=False)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                await self._flowing.wait()
                if self.latency:
                    await asyncio.sleep(self.latency)
                if writer.is_closing():
                    break
                writer.write(chunk)
                await writer.drain()
        with contextlib.suppress(OSError):
            if not writer.is_closing() and writer.can_write_eof():
                writer.write_eof()


def _close(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    if writer.is_closing():
        return
    if reset:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                # SO_LINGER with a zero timeout: close() sends RST, not FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()
