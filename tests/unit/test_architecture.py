"""The layers' rules, checked on the source: every import arrow points down.

Each module is parsed (never imported) and every ``import`` in it counts, those inside
functions too: an import deferred into a function is still a dependency.

- the domain is pure: it imports nothing of ours outside ``domain/``, nor any I/O library;
- no module under ``encompass/`` imports the top-level ``workers`` package (its entry
  points for ``python -m workers.NAME`` sit above everything);
- adapters implement ports and import no use case (``services``), no route (``api``) and
  no worker;
- use cases import no route and no worker;
- the routes (``api/``) call use cases and import no SQLAlchemy;
- every use case lives in a stage folder: no module directly in ``encompass/services/``;
- no import cycle, even through imports inside functions.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("encompass", "workers")
IO_LIBRARIES = ("sqlalchemy", "aiohttp", "aio_pika", "aiormq", "asyncpg", "aiosmtplib")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _imports(path: Path) -> Iterator[str]:
    """Every module an ``import`` in ``path`` names (``from a import b`` names ``a`` and
    ``a.b``: b may be a module), relative imports resolved."""
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _violations(under: str, forbidden: tuple[str, ...]) -> list[str]:
    """``module -> import`` for each module under ``under`` importing one of ``forbidden``
    (a name or any module inside it)."""
    found = []
    for name, path in _modules().items():
        if name != under and not name.startswith(under + "."):
            continue
        for imported in set(_imports(path)):
            if any(imported == f or imported.startswith(f + ".") for f in forbidden):
                found.append(f"{name} -> {imported}")
    return sorted(found)


def test_the_sources_are_found() -> None:
    # A rule checked over nothing proves nothing.
    names = _modules()
    assert "encompass.services.intake.ingest" in names
    assert "encompass.adapters.broker" in names
    assert "encompass.api.app" in names
    assert "encompass.workers.runner" in names


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        (
            "encompass.domain",
            (
                "encompass.adapters",
                "encompass.services",
                "encompass.api",
                "encompass.workers",
                "workers",
                *IO_LIBRARIES,
            ),
        ),
        ("encompass", ("workers",)),
        ("encompass.adapters", ("encompass.services", "encompass.api", "encompass.workers")),
        ("encompass.services", ("encompass.api", "encompass.workers", "workers")),
        ("encompass.api", ("sqlalchemy", "encompass.workers", "workers")),
    ],
    ids=["domain-is-pure", "nothing-imports-workers", "adapters", "services", "api"],
)
def test_every_arrow_points_down(layer: str, forbidden: tuple[str, ...]) -> None:
    assert _violations(layer, forbidden) == []


def test_every_use_case_lives_in_a_stage_folder() -> None:
    services = ROOT / "encompass" / "services"
    loose = sorted(p.name for p in services.glob("*.py") if p.name != "__init__.py")
    assert loose == []
    stages = sorted(p.name for p in services.iterdir() if (p / "__init__.py").is_file())
    assert len(stages) >= 5


def test_no_import_cycle() -> None:
    names = _modules()
    graph = {
        name: {i for i in _imports(path) if i in names and i != name}
        for name, path in names.items()
    }
    cycles: list[list[str]] = []
    # Tarjan's strongly connected components, iteratively (no recursion limit to meet).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    assert cycles == []
