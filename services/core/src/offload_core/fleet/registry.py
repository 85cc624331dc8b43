"""The worker registry in Redis: who consumes, what each worker is doing, and who was lost.

Each worker process writes its entry (`offload:worker:{id}`, a hash) and when it was last seen
(`offload:workers`, a sorted set) every `OFFLOAD_WORKER_HEARTBEAT_SECONDS`, from its consumer
loop (offload_core/worker/presence.py), and removes both when it stops cleanly. Readers
(the status service) call an entry:

    live    seen within OFFLOAD_WORKER_LOST_AFTER_SECONDS
    lost    not seen since then: the process died, hung, or lost its network; listed with
            `lost_at` for OFFLOAD_WORKER_LOST_RETENTION_SECONDS, then gone

Bounded: one entry per worker process, expiring a retention after its last beat; the index is
trimmed past the retention and holds at most MAX_ENTRIES ids. Nothing is written per job: the
counts and the current jobs travel with the beat, so ten million jobs cost the registry nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from offload_core.jobs import keys, scripts
from offload_core.jobs.record import as_text, iso
from offload_core.settings import Settings

# The most ids the index keeps (the most recently seen): a fleet churned by autoscaling for a
# retention period stays far below it.
MAX_ENTRIES = 5000
# The most entries a listing reads, and the most newly lost ones one sweep marks.
MAX_LISTED = 500
SWEEP_LIMIT = 1000

LIVE, LOST = "live", "lost"


@dataclass(frozen=True)
class WorkerIdentity:
    """What does not change while a worker process runs."""

    id: str  # the Celery node name: <type>-<pid>@<host>, what `celery inspect` replies as
    type: str
    host: str
    pid: int
    pool: str
    concurrency: int
    version: str
    started_at: float
    queues: tuple[str, ...]

    def fields(self) -> dict[str, str]:
        return {"id": self.id, "type": self.type, "host": self.host, "pid": str(self.pid), "pool": self.pool,
                "concurrency": str(self.concurrency), "version": self.version, "started_at": repr(self.started_at),
                "queues": ",".join(self.queues)}


def entry_ttl(settings: Settings) -> int:
    return int(settings.worker_lost_after_seconds + settings.worker_lost_retention_seconds) + 1


class RegistryWriter:
    """One worker process's side (a synchronous redis-py client)."""

    def __init__(self, client: Any, settings: Settings, identity: WorkerIdentity) -> None:
        self.client, self.settings, self.identity = client, settings, identity
        self._beat = scripts.WORKER_BEAT.register(client)
        self._static = [x for kv in identity.fields().items() for x in kv]

    def beat(self, *, current_jobs: list[str], processed: int, failed: int, now: float | None = None) -> None:
        now = time.time() if now is None else now
        s = self.settings
        dynamic = ["current_jobs", json.dumps(current_jobs[:100]), "processed", str(processed),
                   "failed", str(failed)]
        self._beat(workers_key=keys.WORKERS, worker_key=keys.worker(self.identity.id), worker_id=self.identity.id,
                   now=repr(now), ttl=entry_ttl(s),
                   forget_before=repr(now - s.worker_lost_after_seconds - s.worker_lost_retention_seconds),
                   max_entries=MAX_ENTRIES, extra_args=self._static + dynamic)

    def leave(self) -> None:
        """A clean stop: the worker is gone on purpose, so it is not listed as lost."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(keys.WORKERS, self.identity.id)
        pipe.delete(keys.worker(self.identity.id))
        pipe.execute()


def _entry(raw: dict[Any, Any], last_seen: float, now: float, settings: Settings) -> dict[str, Any]:
    h = {as_text(k): as_text(v) for k, v in raw.items()}
    lost = last_seen < now - settings.worker_lost_after_seconds
    try:
        current = json.loads(h.get("current_jobs") or "[]")
    except ValueError:
        current = []
    lost_at = float(h["lost_at"]) if h.get("lost_at") else (now if lost else None)
    return {
        "id": h.get("id", ""), "type": h.get("type", ""), "state": LOST if lost else LIVE,
        "host": h.get("host", ""), "pid": int(h.get("pid") or 0), "pool": h.get("pool", ""),
        "concurrency": int(h.get("concurrency") or 0), "version": h.get("version", ""),
        "queues": [q for q in h.get("queues", "").split(",") if q],
        "started_at": iso(float(h["started_at"])) if h.get("started_at") else None,
        "last_seen_at": iso(last_seen), "seconds_since_seen": round(max(0.0, now - last_seen), 1),
        "lost_at": iso(lost_at) if lost else None,
        "running": len(current), "current_jobs": current,
        "processed": int(h.get("processed") or 0), "failed": int(h.get("failed") or 0),
    }


async def read_workers(redis: Any, settings: Settings, *, now: float | None = None,
                       limit: int = MAX_LISTED) -> list[dict[str, Any]]:
    """The registered workers, most recently seen first (live ones, then lost ones): at most `limit`."""
    now = time.time() if now is None else now
    forget_before = now - settings.worker_lost_after_seconds - settings.worker_lost_retention_seconds
    ids = await redis.zrevrangebyscore(keys.WORKERS, "+inf", repr(forget_before), start=0, num=limit,
                                       withscores=True)
    if not ids:
        return []
    pipe = redis.pipeline(transaction=False)
    for member, _ in ids:
        pipe.hgetall(keys.worker(as_text(member)))
    entries = await pipe.execute()
    return [_entry(raw, score, now, settings) for (_, score), raw in zip(ids, entries) if raw]


async def sweep_lost(redis: Any, settings: Settings, *, now: float | None = None) -> list[str]:
    """Mark the workers that became lost since the last sweep; their types, one per worker."""
    now = time.time() if now is None else now
    sweep = scripts.WORKER_SWEEP.register(redis)
    lost = await sweep(workers_key=keys.WORKERS, lost_before=repr(now - settings.worker_lost_after_seconds),
                       forget_before=repr(now - settings.worker_lost_after_seconds
                                          - settings.worker_lost_retention_seconds),
                       now=repr(now), worker_key_prefix=keys.worker(""), limit=SWEEP_LIMIT)
    return [as_text(t) for t in lost]


def live_by_type(workers: list[dict[str, Any]], types: list[str]) -> dict[str, int]:
    """Live worker processes per job type (every type named, 0 when none)."""
    counts = {t: 0 for t in types}
    for w in workers:
        if w["state"] == LIVE and w["type"] in counts:
            counts[w["type"]] += 1
    return counts
