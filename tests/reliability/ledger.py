"""Reading the truth from Redis after a scenario: job records, state events, result writes.

The APIs show what a client sees; these helpers read the store directly so a scenario can
count what happened (how often a result was written, every state a job went through) for
hundreds of jobs in a few round trips.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass

import redis

TERMINAL = frozenset({"succeeded", "failed", "dead", "cancelled"})


@dataclass(frozen=True)
class JobFacts:
    id: str
    state: str | None  # None: no record at all (lost)
    attempts: int
    result_writes: int
    has_result: bool
    states: tuple[str, ...]  # state events in order
    state_times: tuple[float, ...]  # the `at` of each state event
    error: dict | None
    started_at: float | None
    queued_at: float | None
    finished_at: float | None


def facts(client: redis.Redis, job_ids: list[str], *, batch: int = 200) -> dict[str, JobFacts]:
    """Everything the store knows about each job, read in pipelined batches."""
    out: dict[str, JobFacts] = {}
    for start in range(0, len(job_ids), batch):
        chunk = job_ids[start:start + batch]
        pipe = client.pipeline(transaction=False)
        for jid in chunk:
            pipe.hgetall(f"offload:job:{jid}")
            pipe.hexists(f"offload:job:{jid}", "result")
            pipe.xrange(f"offload:job:{jid}:events")
        replies = pipe.execute()
        for i, jid in enumerate(chunk):
            raw, has_result, events = replies[3 * i], replies[3 * i + 1], replies[3 * i + 2]
            h = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
            # A job's first state is not in its stream: the status service replays it from the record.
            states = ["scheduled" if h.get("run_at") else "queued"] if h else []
            times = [float(h["created_at"])] if h else []
            for _, fields in events:
                if fields[b"kind"] == b"state":
                    data = json.loads(fields[b"data"])
                    states.append(data["state"])
                    times.append(float(data["at"]))
            if h.get("state") in TERMINAL and not events:
                # The stream expired (events_grace_seconds after the end): the API replays the
                # terminal state from the record, and so does this.
                states.append(h["state"])
                times.append(float(h.get("finished_at") or 0))
            out[jid] = JobFacts(
                id=jid, state=h.get("state"), attempts=int(h.get("attempts") or 0),
                result_writes=int(h.get("result_writes") or 0), has_result=bool(has_result),
                states=tuple(states), state_times=tuple(times),
                error=json.loads(h["error"]) if h.get("error") and h["error"] != "null" else None,
                started_at=_f(h.get("started_at")), queued_at=_f(h.get("queued_at")),
                finished_at=_f(h.get("finished_at")),
            )
    return out


def wait_all_terminal(client: redis.Redis, job_ids: list[str], timeout: float, *, poll: float = 0.5) -> dict[str, str]:
    """Wait until every job is terminal; returns the last state seen of each (None = no record)."""
    deadline = time.monotonic() + timeout
    pending = list(job_ids)
    last: dict[str, str] = {}
    while True:
        pipe = client.pipeline(transaction=False)
        for jid in pending:
            pipe.hget(f"offload:job:{jid}", "state")
        states = [s.decode() if s else None for s in pipe.execute()]
        last.update(zip(pending, states))
        pending = [j for j, s in zip(pending, states) if s not in TERMINAL]
        if not pending or time.monotonic() > deadline:
            return last
        time.sleep(poll)


def state_counts(states: dict[str, str | None]) -> dict[str, int]:
    return dict(Counter(s or "missing" for s in states.values()))


def _f(value: str | None) -> float | None:
    return float(value) if value else None
