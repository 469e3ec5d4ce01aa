"""The inbox page's script is committed built (so the Python package ships it); it must be
exactly what the pinned packages and ``web/src`` build today."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
BUILT = ROOT / "encompass" / "web" / "static" / "inbox.js"
OUTFILE = "--outfile=../encompass/web/static/inbox.js"


def test_the_committed_script_equals_a_fresh_build(tmp_path: Path) -> None:
    esbuild = WEB / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        pytest.fail("web/node_modules is missing: run make (it runs npm ci)", pytrace=False)
    script = json.loads((WEB / "package.json").read_text())["scripts"]["build"]
    assert OUTFILE in script
    # Given the build command of package.json, writing elsewhere,
    fresh = tmp_path / "inbox.js"
    args = script.replace(OUTFILE, f"--outfile={fresh}").split()
    # when it runs,
    subprocess.run([str(esbuild), *args[1:]], cwd=WEB, check=True, capture_output=True)
    # then the committed file is byte for byte what it builds.
    assert fresh.read_bytes() == BUILT.read_bytes(), "run: npm run --prefix web build"


def test_the_script_names_no_other_site() -> None:
    # Nothing is fetched from elsewhere at run time (the pages' CSP is script-src 'self').
    assert "://" not in BUILT.read_text()
