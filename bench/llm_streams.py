"""LLM at the speed of the inference server: many streams through one worker pod.

The server is the streaming simulator (`bench.llm_sim`, its own process): a fixed time to first
token, 20 ms between tokens, N tokens, unlimited concurrency, so it stands in for a GPU server's
latency profile, not its compute.

- Offload: `jobs` LLM jobs submitted to the gateway at once; one `offload-worker-llm` process at
  its defaults (the openai backend, OFFLOAD_LLM_MAX_IN_FLIGHT = 64 streams). Jobs/s and tokens/s
  over the time from the first submit to the last job's end (Redis's lifetime counters, polled);
  time to first token as an SSE client sees it (POST → first `token` event), on a sample of jobs
  followed over the status service from the moment they were accepted.
- Direct: an asyncio client with the same number of requests in flight (64), streaming the same
  requests straight from the simulator over plain asyncio streams (an HTTP library's cost per
  chunk would flatter Offload); time to first token from the request to the first content chunk.

Rounds alternate which goes first. The worker's RSS (the pod: one process) is read after the runs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from .offload import OffloadEnv
from .procs import Proc, RedisServer, free_port
from .stats import summary

MODEL = "sim-model"
PROMPT = "Tell me about lighthouses."
IN_FLIGHT = 64  # OFFLOAD_LLM_MAX_IN_FLIGHT's default; the direct client keeps as many


def _body(tokens: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": tokens, "temperature": 0.0}


async def _direct(base: str, jobs: int, tokens: int) -> dict[str, Any]:
    """The best a client can do alone: plain asyncio streams, HTTP/1.1 keep-alive, one connection
    per request in flight, each chunk read and its JSON decoded (no HTTP library's cost per chunk)."""
    host, port = base.split("//", 1)[1].split("/", 1)[0].split(":")
    body = json.dumps({**_body(tokens), "model": MODEL, "stream": True}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    todo = list(range(jobs))
    ttfts: list[float] = []
    got = 0

    async def connection() -> None:
        nonlocal got
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while todo:
                todo.pop()
                started = time.perf_counter()
                first = None
                writer.write(request)
                await reader.readuntil(b"\r\n\r\n")  # status line and headers
                while True:
                    size = int((await reader.readline()).strip(), 16)
                    if size == 0:
                        await reader.readline()
                        break
                    data = await reader.readexactly(size + 2)
                    if data.startswith(b"data: {"):  # the text, decoded as any client must
                        choices = json.loads(data[6:])["choices"]
                        if choices and choices[0]["delta"].get("content"):
                            first = first or time.perf_counter()
                            got += 1
                ttfts.append(first - started)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(min(IN_FLIGHT, jobs))))
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "jobs_per_s": jobs / elapsed, "tokens_per_s": got / elapsed,
            "ttft_ms": [t * 1000 for t in ttfts], "tokens": got}


async def _offload(gateway: str, status: str, key: str, r: redis.Redis, jobs: int, tokens: int,
                   followed: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    done_before = int(r.hget("offload:counters", "llm:succeeded") or 0)
    ttfts: list[float] = []

    async def follow(http: httpx.AsyncClient, job_id: str, submitted: float) -> None:
        async with http.stream("GET", f"{status}/v1/jobs/{job_id}/events", headers=headers) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("event: token"):
                    ttfts.append(time.perf_counter() - submitted)
                    return

    async def submit(http: httpx.AsyncClient, gate: asyncio.Semaphore, i: int) -> asyncio.Task | None:
        async with gate:
            t0 = time.perf_counter()
            answer = await http.post(f"{gateway}/v1/jobs/llm", json=_body(tokens), headers=headers)
            answer.raise_for_status()
        if i < followed:
            return asyncio.create_task(follow(http, answer.json()["id"], t0))
        return None

    limits = httpx.Limits(max_connections=64 + followed, max_keepalive_connections=64 + followed)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        gate = asyncio.Semaphore(32)
        started = time.perf_counter()
        # Followed jobs go first, so their streams are open before their first token.
        tasks = [t for t in await asyncio.gather(*(submit(http, gate, i) for i in range(jobs))) if t]
        deadline = started + 600
        while int(r.hget("offload:counters", "llm:succeeded") or 0) - done_before < jobs:
            if time.perf_counter() > deadline:
                raise RuntimeError("the LLM jobs did not all succeed within 600 s")
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        await asyncio.gather(*tasks)
    return {"seconds": elapsed, "jobs_per_s": jobs / elapsed, "tokens_per_s": jobs * tokens / elapsed,
            "ttft_ms": [t * 1000 for t in ttfts], "tokens": jobs * tokens}


def run(server: RedisServer, log_dir: Path, *, rounds: int, jobs: int, tokens: int, ttft_s: float = 0.1,
        itl_s: float = 0.02, followed: int = 32) -> dict[str, Any]:
    env = OffloadEnv(server.url, log_dir)
    server.client().flushall()
    sim_port = free_port()
    sim = Proc("llm-sim", [sys.executable, "-m", "bench.llm_sim", "--port", str(sim_port), "--ttft", str(ttft_s),
                           "--itl", str(itl_s)], {}, log_dir, port=sim_port, ready_path="/v1/models")
    base = f"http://127.0.0.1:{sim_port}/v1"
    llm_env = {"OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": base, "OFFLOAD_LLM_MODEL": MODEL}
    status = env.status()
    gateway = env.gateway(name="offload-gateway-llm-streams", **llm_env)
    worker = env.worker("llm", **llm_env)
    procs = [sim, status, gateway, worker]
    for p in procs:
        p.launch()
    results: dict[str, list[dict[str, Any]]] = {"offload": [], "direct": []}
    r = server.client()
    try:
        for p in procs:
            p.wait_ready(120)
        # Warm-up: connections, imports, the first jobs' code paths.
        asyncio.run(_offload(gateway.url, status.url, env.api_key, r, 16, 4, 0))
        asyncio.run(_direct(base, 16, 4))
        for rnd in range(rounds):
            order = ["offload", "direct"] if rnd % 2 == 0 else ["direct", "offload"]
            for name in order:
                if name == "offload":
                    out = asyncio.run(_offload(gateway.url, status.url, env.api_key, r, jobs, tokens, followed))
                else:
                    out = asyncio.run(_direct(base, jobs, tokens))
                results[name].append(out)
                print(f"  llm streams round {rnd + 1} {name}: {out['jobs_per_s']:.1f} jobs/s, "
                      f"{out['tokens_per_s']:.0f} tokens/s, ttft p50 "
                      f"{summary(out['ttft_ms'])['median']:.0f} ms", flush=True)
        rss = worker.rss_mib()
        sim_stats = httpx.get(f"{base}/stats", timeout=5).json()
    finally:
        for p in procs:
            p.stop()
        server.client().flushall()

    def fig(name: str, key: str) -> dict[str, Any]:
        return summary([x[key] for x in results[name]])

    def ttft(name: str, q: str) -> dict[str, Any]:
        return summary([summary(x["ttft_ms"])[q] for x in results[name]])

    return {
        "jobs": jobs, "tokens": tokens, "in_flight": IN_FLIGHT, "ttft_s": ttft_s, "itl_s": itl_s, "followed": followed,
        "jobs_per_s": {n: fig(n, "jobs_per_s") for n in results},
        "tokens_per_s": {n: fig(n, "tokens_per_s") for n in results},
        "ttft_p50_ms": {n: ttft(n, "median") for n in results},
        "ttft_max_ms": {n: ttft(n, "max") for n in results},
        "ratio_jobs_per_s": summary([o["jobs_per_s"] / d["jobs_per_s"]
                                     for o, d in zip(results["offload"], results["direct"])]),
        "worker_rss_mib": rss,
        "server_peak_in_flight": sim_stats["peak"],
    }


if __name__ == "__main__":  # a quick look by hand: python -m bench.llm_streams
    srv = RedisServer().start()
    try:
        print(json.dumps(run(srv, Path("/tmp"), rounds=1, jobs=64, tokens=16), indent=1))
    finally:
        srv.cleanup()
