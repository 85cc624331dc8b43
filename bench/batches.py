"""A batch of N lines against N single submits: the same chat requests, the same worker.

The server is the streaming simulator (`bench.llm_sim`, its own process); one
`offload-worker-llm` process at its defaults (64 streams); the gateway at its defaults, so its
batch coordinator feeds at most OFFLOAD_BATCH_MAX_IN_FLIGHT_PER_TENANT (64) lines at once,
every OFFLOAD_BATCH_FEED_SECONDS (0.5 s).

- Singles: N `POST /v1/jobs/llm`, 32 at a time over keep-alive connections. Submit time: the
  first POST to the last 202. Jobs/s: N over the time from the first POST to the last job's end
  (the store's lifetime counters, polled).
- Batch: one `POST /v1/files` of the N lines (JSONL) and one `POST /v1/batches`. Submit time:
  the upload's start to the batch's answer (the whole file validated). Jobs/s: N over the time
  from the upload's start to the batch `completed` (polled every 50 ms), output file written.

Rounds alternate which goes first.
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


def _request(n: int, tokens: int) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"Question number {n}?"}], "max_tokens": tokens}


async def _singles(gateway: str, key: str, r: redis.Redis, jobs: int, tokens: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    done_before = int(r.hget("offload:counters", "llm:succeeded") or 0)
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        gate = asyncio.Semaphore(32)

        async def submit(i: int) -> None:
            async with gate:
                answer = await http.post(f"{gateway}/v1/jobs/llm", json=_request(i, tokens), headers=headers)
                answer.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(submit(i) for i in range(jobs)))
        submitted = time.perf_counter() - started
        deadline = started + 600
        while int(r.hget("offload:counters", "llm:succeeded") or 0) - done_before < jobs:
            if time.perf_counter() > deadline:
                raise RuntimeError("the single LLM jobs did not all succeed within 600 s")
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
    return {"submit_s": submitted, "seconds": elapsed, "jobs_per_s": jobs / elapsed}


def _batch(gateway: str, key: str, jobs: int, tokens: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    data = "".join(json.dumps({"custom_id": f"q-{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": _request(i, tokens)}) + "\n" for i in range(jobs)).encode()
    with httpx.Client(base_url=gateway, headers=headers, timeout=120) as http:
        started = time.perf_counter()
        uploaded = http.post("/v1/files", files={"file": ("bench.jsonl", data, "application/jsonl")},
                             data={"purpose": "batch"})
        uploaded.raise_for_status()
        created = http.post("/v1/batches", json={"input_file_id": uploaded.json()["id"],
                                                 "endpoint": "/v1/chat/completions", "completion_window": "24h"})
        created.raise_for_status()
        submitted = time.perf_counter() - started
        batch_id = created.json()["id"]
        deadline = started + 600
        while (batch := http.get(f"/v1/batches/{batch_id}").json())["status"] not in ("completed", "failed",
                                                                                      "expired", "cancelled"):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the batch was still {batch['status']} after 600 s")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        counts = batch["request_counts"]
        if batch["status"] != "completed" or counts["completed"] != jobs:
            raise RuntimeError(f"the batch ended {batch['status']} with {counts}")
        # The output must really hold every answer (not part of the timing).
        output = http.get(f"/v1/files/{batch['output_file_id']}/content").content.decode().splitlines()
        if len(output) != jobs:
            raise RuntimeError(f"the output file has {len(output)} lines, not {jobs}")
        http.delete(f"/v1/files/{batch['output_file_id']}")
    return {"submit_s": submitted, "seconds": elapsed, "jobs_per_s": jobs / elapsed, "file_bytes": len(data)}


def run(server: RedisServer, log_dir: Path, *, rounds: int, jobs: int, tokens: int, ttft_s: float = 0.05,
        itl_s: float = 0.01) -> dict[str, Any]:
    env = OffloadEnv(server.url, log_dir)
    server.client().flushall()
    sim_port = free_port()
    sim = Proc("llm-sim", [sys.executable, "-m", "bench.llm_sim", "--port", str(sim_port), "--ttft", str(ttft_s),
                           "--itl", str(itl_s)], {}, log_dir, port=sim_port, ready_path="/v1/models")
    base = f"http://127.0.0.1:{sim_port}/v1"
    llm_env = {"OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": base, "OFFLOAD_LLM_MODEL": MODEL}
    status = env.status()
    gateway = env.gateway(name="offload-gateway-batches", **llm_env)
    worker = env.worker("llm", **llm_env)
    procs = [sim, status, gateway, worker]
    for p in procs:
        p.launch()
    results: dict[str, list[dict[str, Any]]] = {"singles": [], "batch": []}
    r = server.client()
    try:
        for p in procs:
            p.wait_ready(120)
        asyncio.run(_singles(gateway.url, env.api_key, r, 16, 2))  # warm-up: connections, first code paths
        _batch(gateway.url, env.api_key, 16, 2)
        for rnd in range(rounds):
            for name in (["singles", "batch"] if rnd % 2 == 0 else ["batch", "singles"]):
                out = (asyncio.run(_singles(gateway.url, env.api_key, r, jobs, tokens)) if name == "singles"
                       else _batch(gateway.url, env.api_key, jobs, tokens))
                results[name].append(out)
                print(f"  batches round {rnd + 1} {name}: submitted in {out['submit_s']:.2f} s, "
                      f"{out['jobs_per_s']:.1f} jobs/s", flush=True)
    finally:
        for p in procs:
            p.stop()
        server.client().flushall()

    def fig(name: str, key: str) -> dict[str, Any]:
        return summary([x[key] for x in results[name]])

    return {
        "jobs": jobs, "tokens": tokens, "ttft_s": ttft_s, "itl_s": itl_s,
        "file_bytes": results["batch"][0]["file_bytes"],
        "submit_s": {n: fig(n, "submit_s") for n in results},
        "jobs_per_s": {n: fig(n, "jobs_per_s") for n in results},
        "ratio_jobs_per_s": summary([b["jobs_per_s"] / s["jobs_per_s"]
                                     for b, s in zip(results["batch"], results["singles"])]),
        "ratio_submit": summary([s["submit_s"] / b["submit_s"] for b, s in zip(results["batch"], results["singles"])]),
    }


if __name__ == "__main__":  # a quick look by hand: python -m bench.batches
    srv = RedisServer().start()
    try:
        print(json.dumps(run(srv, Path("/tmp"), rounds=1, jobs=200, tokens=4), indent=1))
    finally:
        srv.cleanup()
