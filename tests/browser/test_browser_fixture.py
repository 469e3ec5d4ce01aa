"""The browser fixture drives a real Chromium, whose WebCrypto the pages rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Page

pytestmark = pytest.mark.browser


async def test_chromium_runs_scripts_and_has_webcrypto_x25519(
    page: Page, screenshots: Path
) -> None:
    # Given a page served from loopback (a secure context, as WebCrypto requires),
    app = web.Application()

    async def home(_: web.Request) -> web.Response:
        return web.Response(text="<main><h1>Encompass</h1></main>", content_type="text/html")

    app.router.add_get("/", home)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        await page.goto(f"http://{host}:{port}/")
        # When it generates a non-extractable X25519 key with WebCrypto,
        algorithm = await page.evaluate(
            "async () => (await crypto.subtle.generateKey({name: 'X25519'}, false,"
            " ['deriveBits'])).privateKey.algorithm.name"
        )
        # Then the browser supports what a Key Adult's inbox needs.
        assert algorithm == "X25519"
        assert await page.inner_text("h1") == "Encompass"
        await page.screenshot(path=screenshots / "browser-fixture.png")
        assert (screenshots / "browser-fixture.png").stat().st_size > 0
    finally:
        await runner.cleanup()
