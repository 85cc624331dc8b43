"""Fixtures of the reliability suite: measured figures, and direct access to the store.

Scenarios assert behaviour (nothing lost, one result write, the right states) and *report*
timings and counts as figures: the machine is shared, so a timing is a measurement, not a
pass/fail line. The figures are printed at the end of the run and written as JSON
(`reliability-figures.json` under pytest's base temp directory, or `OFFLOAD_RELIABILITY_FIGURES`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

_FIGURES: dict[str, dict[str, Any]] = {}


class Figures:
    """`figures.record("chaos", jobs=200, kills=31)` adds to the scenario's row."""

    def record(self, scenario: str, **values: Any) -> None:
        _FIGURES.setdefault(scenario, {}).update(values)


@pytest.fixture
def figures() -> Figures:
    return Figures()


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the database `platform_factory` platforms use."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001 - pytest hook
    if not _FIGURES:
        return
    target = os.environ.get("OFFLOAD_RELIABILITY_FIGURES")
    factory = getattr(config, "_tmp_path_factory", None)  # pytest's own; absent only if tmpdir is disabled
    base = Path(str(factory.getbasetemp())) if factory else Path(tempfile.gettempdir())
    path = Path(target) if target else base / "reliability-figures.json"
    path.write_text(json.dumps(_FIGURES, indent=2, sort_keys=True, default=str))
    terminalreporter.section("reliability figures")
    for scenario, values in sorted(_FIGURES.items()):
        terminalreporter.write_line(f"{scenario}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    terminalreporter.write_line(f"(written to {path})")
