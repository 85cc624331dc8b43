"""Settings the scenarios share: short time limits and visibility timeout, so kombu's own
redelivery (the last line of defence behind the lease reaper) takes seconds instead of an
hour. The settings refuse a visibility timeout that does not exceed every hard time limit, so
the three always move together."""

from __future__ import annotations


def short_timeouts(visibility_timeout: int, **extra: str) -> dict[str, str]:
    hard = visibility_timeout - 2
    soft = hard - 2
    # A lease of 10 s (30 s shipped): long enough that a heartbeat starved by a busy machine does
    # not make the lease reaper take a live run for a lost one, short enough to recover quickly.
    env = {"OFFLOAD_VISIBILITY_TIMEOUT_SECONDS": str(visibility_timeout), "OFFLOAD_LEASE_SECONDS": "10",
           # llama.cpp threads spin while they wait: several workers with two threads each on
           # two shared cores slow every job down tenfold.
           "OFFLOAD_LLM_THREADS": "1"}
    for kind in ("LLM", "OCR", "PROBE"):
        env[f"OFFLOAD_{kind}_SOFT_TIME_LIMIT_SECONDS"] = str(soft)
        env[f"OFFLOAD_{kind}_HARD_TIME_LIMIT_SECONDS"] = str(hard)
    env["OFFLOAD_PROBE_MAX_SLEEP_SECONDS"] = str(max(0, soft - 1))
    env.update(extra)
    return env
