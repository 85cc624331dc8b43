"""The gateway's background work for the whole platform, each task on its own interval:

    task              every                          on
    mover             delayed_poll_seconds (0.25 s)  every replica (each move checks first)
    waiting sweep     delayed_poll_seconds           every replica (each cancel checks first)
    webhooks          delayed_poll_seconds           every replica (each delivery is leased)
    lease reaper      lease_reaper_seconds (5 s)     every replica (each recovery checks first)
    lost-message      lost_message_sweep_seconds     one replica per interval (a Redis lock)
      sweep           (60 s)
    reconciliation    reconcile_seconds (300 s)      one replica per interval (a Redis lock)
    batches           batch_feed_seconds (0.5 s)     one replica per interval (a Redis lock): collects
                                                     ended lines, feeds more, ends batches
                                                     (batches/coordinator.py)
    file expiry       60 s                           every replica (each delete checks first)

The gateway runs it because it is always up (KEDA may scale every worker to zero). A task that
fails (Redis away) logs once, keeps its interval and tries again; nothing here can stop the
gateway from serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from offload_core.batches.coordinator import BatchCoordinator
from offload_core.batches.store import BatchStore
from offload_core.errors import StoreUnavailable
from offload_core.jobs import keys
from offload_core.jobs.store import JobStore
from offload_core.maintenance.leases import LeaseReaper
from offload_core.maintenance.mover import DelayedMover
from offload_core.maintenance.reconcile import Reconciler
from offload_core.maintenance.sweeper import LostMessageSweeper
from offload_core.maintenance.waiting import WaitingSweep
from offload_core.maintenance.webhooks import WebhookDispatcher

log = logging.getLogger("offload.maintenance")


FILE_EXPIRY_SECONDS = 60.0


class Maintenance:
    def __init__(self, store: JobStore, batches: BatchStore | None = None) -> None:
        s = store.settings
        self.store, self.settings = store, s
        self.batches = BatchCoordinator(batches) if batches is not None else None
        self.mover = DelayedMover(store.redis, s)
        self.waiting = WaitingSweep(store.redis, s)
        self.reaper = LeaseReaper(store.redis, s, store.app)
        self.webhooks = WebhookDispatcher(store.redis, s)
        self.sweeper = LostMessageSweeper(store, interval_seconds=s.lost_message_sweep_seconds)
        self.reconciler = Reconciler(store.redis, s, tenants=lambda: [t for t, _ in s.api_key_pairs])

    def tasks(self) -> list[tuple[str, float, Callable[[], Awaitable[Any]], bool]]:
        """(name, interval, what, one replica at a time) for every task that is switched on."""
        s = self.settings
        out: list[tuple[str, float, Callable[[], Awaitable[Any]], bool]] = [
            ("mover", s.delayed_poll_seconds, self.mover.move_due, False),
            ("waiting-sweep", s.delayed_poll_seconds, self.waiting.cancel_due, False),
            ("webhooks", s.delayed_poll_seconds, self.webhooks.dispatch_due, False),
            ("lease-reaper", s.lease_reaper_seconds, self.reaper.reap, False),
        ]
        if s.lost_message_sweep_seconds > 0:
            out.append(("lost-message-sweep", s.lost_message_sweep_seconds, self._sweep, True))
        if s.reconcile_seconds > 0:
            out.append(("reconcile", s.reconcile_seconds, self.reconciler.run_once, True))
        if self.batches is not None:
            out.append(("batches", s.batch_feed_seconds, self.batches.tick, True))
            out.append(("file-expiry", FILE_EXPIRY_SECONDS, self.batches.files.expire_due, False))
        return out

    async def run(self) -> None:
        """Run every task until cancelled."""
        loops = [asyncio.create_task(self._every(*task), name=f"maintenance-{task[0]}") for task in self.tasks()]
        try:
            await asyncio.gather(*loops)
        finally:
            for loop in loops:
                loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*loops, return_exceptions=True)
            await self.webhooks.drain()
            await self.webhooks.aclose()

    async def _every(self, name: str, interval: float, what: Callable[[], Awaitable[Any]], locked: bool) -> None:
        failing = False
        while True:
            started = time.monotonic()
            try:
                # The lock lives a little less than the interval: held for exactly the interval,
                # this replica's own next turn (its timer a millisecond early) finds it still
                # there and skips, halving the task's rate (the batch feed, measured).
                if not locked or await self.store.redis.set(keys.lock(name), str(time.time()), nx=True,
                                                            px=max(1, int(interval * 900))):
                    await what()
                if failing:
                    log.info("%s: Redis answers again", name)
                failing = False
            except asyncio.CancelledError:
                raise
            except (StoreUnavailable, RedisError, OSError) as exc:
                if not failing:
                    log.warning("%s skipped: Redis unavailable (%s); trying again every %g s", name, exc, interval)
                failing = True
            except Exception:  # noqa: BLE001 - a background task must never take the gateway down
                log.exception("%s failed; trying again in %g s", name, interval)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _sweep(self) -> None:
        report = await self.sweeper.sweep_once()
        if report.rescued:
            log.warning("queued %d jobs again whose queue message was lost: %s",
                        len(report.rescued), ", ".join(report.rescued[:20]))
