"""The maintenance loop's one-replica-per-interval lock against a real Redis: a locked task runs
on every interval on its replica (not every other one), and two replicas together run it about
once per interval, never both at every turn."""

from __future__ import annotations

import asyncio
import time

import pytest

from offload_core.jobs.store import JobStore, connect
from offload_core.maintenance.loop import Maintenance
from offload_core.settings import Settings

INTERVAL = 0.25
SECONDS = 3.0


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(env="dev", redis_url=redis_url)


def _runs(settings: Settings, replicas: int) -> list[float]:
    """When `replicas` gateways' loops ran one locked task, in SECONDS."""
    runs: list[float] = []

    async def task() -> None:
        runs.append(time.monotonic())

    async def go() -> None:
        stores = [JobStore(connect(settings), settings) for _ in range(replicas)]
        loops = [asyncio.create_task(Maintenance(store)._every("loop-test", INTERVAL, task, True)) for store in stores]
        await asyncio.sleep(SECONDS)
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        for store in stores:
            await store.redis.aclose()

    asyncio.run(go())
    return runs


def test_a_locked_task_runs_on_every_interval_of_its_replica(settings):
    runs = _runs(settings, 1)
    gaps = [b - a for a, b in zip(runs, runs[1:])]
    # A lock that outlived the interval made the replica skip a turn now and then (a gap of two).
    assert len(runs) >= 10 and max(gaps) < 1.8 * INTERVAL, gaps


def test_two_replicas_share_the_interval(settings):
    assert 10 <= len(_runs(settings, 2)) <= 15  # about one per interval between them, not two
