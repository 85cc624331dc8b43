"""Settings the scenarios share: short time limits and visibility timeout, so recovery after a
lost worker takes seconds instead of an hour. The settings refuse a visibility timeout that
does not exceed every hard time limit, so the three always move together."""

from __future__ import annotations


def short_timeouts(visibility_timeout: int, **extra: str) -> dict[str, str]:
    hard = visibility_timeout - 2
    soft = hard - 2
    env = {"OFFLOAD_VISIBILITY_TIMEOUT_SECONDS": str(visibility_timeout), "OFFLOAD_LEASE_SECONDS": "5",
           # llama.cpp threads spin while they wait: several workers with two threads each on
           # two shared cores slow every job down tenfold.
           "OFFLOAD_LLM_THREADS": "1"}
    for kind in ("LLM", "OCR"):
        env[f"OFFLOAD_{kind}_SOFT_TIME_LIMIT_SECONDS"] = str(soft)
        env[f"OFFLOAD_{kind}_HARD_TIME_LIMIT_SECONDS"] = str(hard)
    env.update(extra)
    return env
