"""``encompass demo --serve``: the set-up link it prints works in a browser, a fresh notice
reaches that browser and opens, and the demo ends cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

pytestmark = pytest.mark.browser


async def _line(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> re.Match[str]:
    while True:
        raw = await asyncio.wait_for(stream.readline(), timeout=120)
        if not raw:
            pytest.fail("the demo ended early:\n" + "".join(seen), pytrace=False)
        seen.append(raw.decode())
        if found := re.search(pattern, seen[-1]):
            return found


async def test_the_demo_serves_an_inbox_a_person_can_open(browser: Browser, tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ENCOMPASS_") or k == "ENCOMPASS_DATA_KEY"
    }
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "encompass.cli",
        "demo",
        "--serve",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env=env,
    )
    assert demo.stdout is not None
    seen: list[str] = []
    try:
        enrol_url = (await _line(demo.stdout, r"enrol_url: (\S+)", seen))[1]
        page = await browser.new_page()
        await page.goto(enrol_url)
        await page.get_by_role("button", name="Set up this browser").click()
        notice_url = (await _line(demo.stdout, r"A new notice is waiting: (\S+)", seen))[1]
        await page.goto(notice_url)
        await expect(page.get_by_role("heading", name="Isla Patel")).to_be_visible()
        await page.close()
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(demo.stdout.read(), timeout=60)
        await demo.wait()
    assert "Demo stopped." in rest.decode(), "".join(seen) + rest.decode()
    assert demo.returncode == 0
