"""A real browser for the pages: Debian's Chromium driven by Playwright, nothing downloaded.

``.ci/run`` installs the ``chromium`` package; Playwright for Python drives it through
``executable_path`` (``ENCOMPASS_TEST_CHROMIUM`` to point elsewhere). Screenshots are kept in
``build/screenshots/`` for a person to look at after the run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"


def chromium_path() -> str:
    path = os.environ.get("ENCOMPASS_TEST_CHROMIUM") or shutil.which("chromium") or ""
    if not path:
        pytest.fail(
            "no chromium on PATH: install Debian's chromium package (.ci/run does) or "
            "set ENCOMPASS_TEST_CHROMIUM",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # No sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A browser profile of the test's own: cookies and IndexedDB start empty."""
    ctx = await browser.new_context()
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
