"""A load generator run as its own process: submits LLM jobs at a steady rate (open loop: the
next request leaves on schedule whether or not the last one came back) while SSE followers
read the events of recent jobs to their end. Prints one JSON report on stdout.

    python -m tests.reliability.loadgen --gateway URL --status URL --key KEY --rate 8 --seconds 60

Only for services this run started on 127.0.0.1: it refuses any other host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter, deque
from urllib.parse import urlsplit

import httpx

BODY = {"prompt": "Hi", "max_tokens": 1, "temperature": 0, "priority": "normal"}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.headers = {"Authorization": f"Bearer {args.key}"}
        self.latencies: list[float] = []
        self.statuses: Counter = Counter()
        self.errors: list[str] = []
        self.recent: deque[str] = deque(maxlen=50)
        self.followed = 0
        self.follow_errors: list[str] = []
        self.stop = asyncio.Event()

    async def submit(self, client: httpx.AsyncClient) -> None:
        started = time.perf_counter()
        try:
            r = await client.post(f"{self.args.gateway}/v1/jobs/llm", json=BODY, headers=self.headers)
        except httpx.HTTPError as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return
        self.latencies.append(time.perf_counter() - started)
        self.statuses[r.status_code] += 1
        if r.status_code == 202:
            self.recent.append(r.json()["id"])
        else:
            self.errors.append(f"HTTP {r.status_code}: {r.text[:200]}")

    async def follow(self, client: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            if not self.recent:
                await asyncio.sleep(0.1)
                continue
            job_id = self.recent.pop()
            try:
                async with client.stream("GET", f"{self.args.status}/v1/jobs/{job_id}/events",
                                         headers=self.headers) as r:
                    if r.status_code != 200:
                        self.follow_errors.append(f"HTTP {r.status_code}")
                        continue
                    ended = False
                    async for line in r.aiter_lines():
                        if line.startswith("data:") and '"state":"' in line:
                            state = json.loads(line[5:])["state"]
                            ended = state in ("succeeded", "failed", "dead", "cancelled")
                    if not ended:
                        self.follow_errors.append(f"stream of {job_id} ended before the job did")
                    else:
                        self.followed += 1
            except httpx.HTTPError as exc:
                self.follow_errors.append(f"{type(exc).__name__}: {exc}")

    async def run(self) -> dict:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            followers = [asyncio.create_task(self.follow(client)) for _ in range(self.args.followers)]
            pending: set[asyncio.Task] = set()
            interval = 1 / self.args.rate
            start = time.perf_counter()
            n = 0
            while time.perf_counter() - start < self.args.seconds:
                task = asyncio.create_task(self.submit(client))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
                await asyncio.sleep(max(0.0, start + n * interval - time.perf_counter()))
            await asyncio.gather(*pending)
            await asyncio.sleep(5)  # the followers finish the jobs they hold
            self.stop.set()
            await asyncio.wait(followers, timeout=30)
        ms = [v * 1000 for v in self.latencies]
        return {
            "submitted": n, "statuses": dict(self.statuses), "errors": self.errors[:20], "error_count": len(self.errors),
            "rate_per_s": self.args.rate, "seconds": self.args.seconds,
            "p50_ms": round(percentile(ms, 50), 1), "p95_ms": round(percentile(ms, 95), 1),
            "p99_ms": round(percentile(ms, 99), 1), "max_ms": round(max(ms, default=0), 1),
            "sse_followed_to_end": self.followed, "sse_errors": self.follow_errors[:20],
            "sse_error_count": len(self.follow_errors),
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gateway", required=True)
    p.add_argument("--status", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--rate", type=float, default=8.0, help="submissions per second")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--followers", type=int, default=4, help="concurrent SSE followers")
    args = p.parse_args()
    for url in (args.gateway, args.status):
        if urlsplit(url).hostname != "127.0.0.1":
            sys.exit(f"refusing to load {url}: only services on 127.0.0.1 that this run started")
    print(json.dumps(asyncio.run(Load(args).run())))


if __name__ == "__main__":
    main()
