"""Test lanes: ``uv run pytest -m "not slow"`` is the unit lane; ``uv run pytest`` runs both.

A test is slow when it starts a server, a subprocess or kill loop, or needs the benchmark data.
Modules and tests mark that with ``pytest.mark.slow``; two rules below add the mark where it is
implied: tests marked ``integration`` (real servers on 127.0.0.1), and tests using the store
fixtures of a benchmark dataset (``tests/support/fixtures.workspace_fixtures(ML100K)``).
"""

from __future__ import annotations

import pytest


def _uses_benchmark_data(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        getattr(definition.func, "needs_benchmark_data", False)
        for name in getattr(item, "fixturenames", ())
        for definition in info.name2fixturedefs.get(name, ())
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put implied slow tests in the slow lane (this hook runs before ``-m`` deselects)."""
    for item in items:
        if item.get_closest_marker("slow"):
            continue
        if item.get_closest_marker("integration") or _uses_benchmark_data(item):
            item.add_marker(pytest.mark.slow)
