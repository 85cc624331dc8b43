"""Jobs finished per minute and job type over the last hour, from snapshots of the lifetime counters.

The finish, requeue and rescue scripts count every outcome in `offload:counters` (fields
`<type>:<outcome>`). Once a minute the status service copies that hash into
`offload:stats:{minute}` (`snapshot`, from its background refresh; kept two hours; with several
status replicas the first copy of a minute wins). The difference between two consecutive
snapshots is what finished in between (`series`). Nothing is written per job, and an hour of
history is one MGET of 61 keys, however many jobs ran.
"""

from __future__ import annotations

import json
import time
from typing import Any

from offload_core.jobs import keys
from offload_core.jobs.record import as_text, iso

SNAPSHOT_TTL_SECONDS = 2 * 3600
MAX_MINUTES = 120
# The outcomes a minute reports, per job type (the counters' other fields, e.g. `rescued`,
# are in GET /v1/queues `totals`).
OUTCOMES = ("succeeded", "failed", "dead", "cancelled", "retried")


async def snapshot(redis: Any, now: float | None = None) -> bool:
    """Copy the counters into this minute's snapshot unless it exists. True when written."""
    minute = int((time.time() if now is None else now) // 60)
    key = keys.stats(minute)
    if await redis.exists(key):
        return False
    counters = {as_text(k): int(v) for k, v in (await redis.hgetall(keys.COUNTERS)).items()}
    return bool(await redis.set(key, json.dumps(counters, separators=(",", ":")), nx=True,
                                ex=SNAPSHOT_TTL_SECONDS))


def _by_type(before: dict[str, int], after: dict[str, int], types: list[str]) -> dict[str, dict[str, int]] | None:
    out = {t: {o: after.get(f"{t}:{o}", 0) - before.get(f"{t}:{o}", 0) for o in OUTCOMES} for t in types}
    if any(v < 0 for counts in out.values() for v in counts.values()):
        return None  # the counters went back (Redis was emptied): this minute cannot be told
    return out


async def series(redis: Any, types: list[str], minutes: int = 60, now: float | None = None) -> dict[str, Any]:
    """One point per minute, oldest first: what finished in that minute, per type and outcome
    (None where a snapshot is missing: the status service was not running). The last point is
    the minute in progress, counted up to now."""
    now = time.time() if now is None else now
    minutes = max(1, min(minutes, MAX_MINUTES))
    current = int(now // 60)
    first = current - minutes + 1
    raw = await redis.mget([keys.stats(m) for m in range(first, current + 1)])
    live = {as_text(k): int(v) for k, v in (await redis.hgetall(keys.COUNTERS)).items()}
    snaps: list[dict[str, int] | None] = [json.loads(r) if r else None for r in raw] + [live]
    points = []
    for i, minute in enumerate(range(first, current + 1)):
        before, after = snaps[i], snaps[i + 1]
        counts = _by_type(before, after, types) if before is not None and after is not None else None
        points.append({"at": iso(minute * 60.0), "partial": minute == current, "types": counts})
    totals = {t: {o: sum(p["types"][t][o] for p in points if p["types"]) for o in OUTCOMES} for t in types}
    return {"minutes": minutes, "step_seconds": 60, "outcomes": list(OUTCOMES), "points": points, "totals": totals}
