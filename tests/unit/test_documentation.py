"""The project documents itself: its pages link to files it holds, and its code cites no
document outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Names of documents that lived outside the repository once; the code must not lean on them.
FOREIGN = re.compile(r"\bBRIEF\b|\bINTERFACE\.md\b|\.\./shared\b")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CITED_DOC = re.compile(r"\b(docs/[\w./-]+\.md|schemas/[\w./-]+\.(?:md|json))\b")


def _sources() -> list[Path]:
    found: list[Path] = []
    for folder in ("encompass", "workers", "tests", "bench", "deploy", "schemas", "docs"):
        found += [
            p
            for p in (ROOT / folder).rglob("*")
            if p.suffix in {".py", ".md", ".json", ".yaml", ".toml"} and p.is_file()
        ]
    return [*found, ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml"]


def test_no_file_cites_a_document_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    offenders = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in _sources()
        if p.resolve() != this
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if FOREIGN.search(line)
    ]
    assert offenders == []


def test_every_relative_link_in_the_docs_resolves() -> None:
    pages = [*(ROOT / "docs").glob("*.md"), ROOT / "README.md", *(ROOT / "schemas").glob("*.md")]
    assert len(pages) >= 8  # the docs exist: this test cannot pass on an empty folder
    broken = [
        f"{page.relative_to(ROOT)} -> {target}"
        for page in pages
        for target in LINK.findall(page.read_text(encoding="utf-8"))
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert broken == []


def test_every_document_the_code_cites_exists() -> None:
    cited = {
        m
        for p in _sources()
        if p.suffix == ".py"
        for m in CITED_DOC.findall(p.read_text(encoding="utf-8"))
    }
    assert cited, "the code should point its readers at docs/ somewhere"
    assert sorted(c for c in cited if not (ROOT / c).exists()) == []
