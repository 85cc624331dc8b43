"""Guarantee: under a steady load (submissions at a fixed rate from a separate process, with SSE
followers) the platform answers every request, and no service leaks memory: after warm-up,
each service's resident set stays within 10% (gateway, status, and the worker with its
job processes).

The run is bounded (SOAK_SECONDS, 40 s by default; `OFFLOAD_SOAK_SECONDS` runs it longer)
and only ever targets the services it started on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading

import psutil
import pytest

from tests.reliability.envs import short_timeouts
from tests.support.processes import REPO

SOAK_SECONDS = float(os.environ.get("OFFLOAD_SOAK_SECONDS", "40"))
RATE = 8.0  # submissions per second: what one LLM worker on a shared core keeps up with
FOLLOWERS = 4
GROWTH_LIMIT = 0.10


class RssSampler(threading.Thread):
    """RSS of each named process tree every `every` seconds."""

    def __init__(self, pids: dict[str, int], every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.pids, self.every = pids, every
        self.samples: dict[str, list[int]] = {name: [] for name in pids}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.every):
            for name, pid in self.pids.items():
                try:
                    root = psutil.Process(pid)
                    self.samples[name].append(sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
                except psutil.Error:
                    pass


def _growth(samples: list[int]) -> float:
    """Median of the last quarter of the run over the median of the quarter after warm-up."""
    after_warmup = samples[len(samples) // 3:]
    quarter = max(1, len(after_warmup) // 4)
    early, late = statistics.median(after_warmup[:quarter]), statistics.median(after_warmup[-quarter:])
    return late / early - 1


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 240)
def test_steady_load_with_sse_followers_has_no_errors_and_no_leak(platform_factory, figures):
    platform = platform_factory.start(workers=("llm",), env=short_timeouts(
        30, OFFLOAD_RATE_LIMIT_PER_MINUTE="100000", OFFLOAD_ACCESS_LOG="0"))
    sampler = RssSampler({"gateway": platform.gateway.proc.pid, "status": platform.status.proc.pid,
                          "worker-llm": platform.workers["llm"].proc.pid})
    sampler.start()
    run = subprocess.run(
        [sys.executable, "-m", "tests.reliability.loadgen", "--gateway", platform.gateway.url,
         "--status", platform.status.url, "--key", platform.keys["alice"], "--rate", str(RATE),
         "--seconds", str(SOAK_SECONDS), "--followers", str(FOLLOWERS)],
        cwd=REPO, capture_output=True, text=True, timeout=SOAK_SECONDS + 120,
    )
    sampler.halt.set()
    sampler.join(10)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    growth = {name: round(_growth(s), 3) for name, s in sampler.samples.items() if len(s) >= 8}
    figures.record("10-load-soak", seconds=SOAK_SECONDS, rate_per_s=RATE, submitted=report["submitted"],
                   errors=report["error_count"], p50_ms=report["p50_ms"], p99_ms=report["p99_ms"],
                   max_ms=report["max_ms"], sse_followed=report["sse_followed_to_end"],
                   sse_errors=report["sse_error_count"],
                   rss_mib={n: round(statistics.median(s) / 2**20) for n, s in sampler.samples.items() if s},
                   rss_growth_after_warmup=growth)
    assert report["error_count"] == 0, report["errors"]
    assert report["statuses"] == {"202": report["submitted"]}, report["statuses"]
    assert report["sse_error_count"] == 0, report["sse_errors"]
    assert report["sse_followed_to_end"] > 0
    assert set(growth) == {"gateway", "status", "worker-llm"}, sampler.samples
    assert all(g <= GROWTH_LIMIT for g in growth.values()), growth
