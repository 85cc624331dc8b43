"""LLM: tokens/s and time to first token as a client sees them, Offload against llama.cpp.

- Offload: `POST /v1/jobs/llm` to the gateway, then the job's SSE stream from the status
  service; the worker is `offload-worker-llm` with the in-process llama.cpp backend. The time to
  first token counts from the POST to the first `token` event; tokens/s is the completion tokens
  (from the result's usage) over the time from the POST to the terminal event. (A rate taken
  from the first token event on would flatter Offload: token events are batched every ~50 ms, so
  its first event already carries several tokens.)
- llama.cpp direct (`bench.llm_baselines`), and `python -m llama_cpp.server` streamed over HTTP,
  measured the same way (from the request to the end of the stream). Same GGUF (SmolLM2-135M-Instruct, bundled), same threads, temperature 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from offload_worker_llm.backends.llamacpp import bundled_model_path

from .offload import OffloadEnv
from .procs import REPO, Proc, RedisServer, free_port
from .stats import summary
from tests.support.platform import parse_sse

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
MODEL = "smollm2-135m-instruct"


def _offload_once(gateway: str, status: str, key: str, max_tokens: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"}
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens, "temperature": 0.0}
    # The client is made before the clock starts: building one (its TLS context) takes tens of ms.
    with httpx.Client(timeout=120) as http:
        started = time.perf_counter()
        job = http.post(f"{gateway}/v1/jobs/llm", json=body, headers=headers)
        job.raise_for_status()
        job_id = job.json()["id"]
        first = end = None
        with http.stream("GET", f"{status}/v1/jobs/{job_id}/events", headers=headers) as stream:
            lines: list[str] = []
            for line in stream.iter_lines():
                lines.append(line)
                if line.startswith("event: token") and first is None:
                    first = time.perf_counter()
            end = time.perf_counter()
        events = parse_sse(lines)
        if not any(kind == "state" and data.get("state") == "succeeded" for _, kind, data in events):
            raise RuntimeError(f"LLM job {job_id} did not succeed: {events[-1:]}")
        usage = http.get(f"{status}/v1/jobs/{job_id}/result", headers=headers).json()["usage"]
    tokens = usage["completion_tokens"]
    return {"ttft_s": first - started, "tokens": tokens, "tps": tokens / (end - started)}


def _server_once(base: str, max_tokens: int) -> dict[str, float]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "temperature": 0.0, "stream": True}
    first, tokens = None, 0
    with httpx.Client(timeout=120) as http:
        started = time.perf_counter()
        with http.stream("POST", f"{base}/chat/completions", json=body) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                delta = json.loads(line[6:])["choices"][0]["delta"]
                if delta.get("content"):
                    first = first or time.perf_counter()
                    tokens += 1
        end = time.perf_counter()
    return {"ttft_s": first - started, "tokens": tokens, "tps": tokens / (end - started)}


def _direct(n: int, threads: int, max_tokens: int) -> list[dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "BENCH_LLM_THREADS": str(threads),
           "BENCH_LLM_MAX_TOKENS": str(max_tokens), "BENCH_LLM_PROMPT": PROMPT}
    out = subprocess.run([sys.executable, "-m", "bench.llm_baselines", str(n)], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"llama.cpp direct failed: {out.stderr[-2000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def run(server: RedisServer, log_dir: Path, *, rounds: int, threads: int, max_tokens: int) -> dict[str, Any]:
    env = OffloadEnv(server.url, log_dir)
    server.client().flushall()
    llm_env = {"OFFLOAD_LLM_BACKEND": "llamacpp", "OFFLOAD_LLM_THREADS": str(threads), "OFFLOAD_LLM_MODEL": MODEL}
    status = env.status()
    gateway = env.gateway(name="offload-gateway-llm")
    worker = env.worker("llm", concurrency=1, **llm_env)
    port = free_port()
    llama_server = Proc("llama-cpp-server", [sys.executable, "-m", "llama_cpp.server", "--model",
                                             str(bundled_model_path()), "--model_alias", MODEL, "--host", "127.0.0.1",
                                             "--port", str(port), "--n_threads", str(threads), "--n_ctx", "2048"],
                        {}, log_dir, port=port, ready_path="/v1/models")
    procs = [status, gateway, worker, llama_server]
    for p in procs:
        p.launch()
    results: dict[str, list[dict[str, float]]] = {"offload": [], "llama_cpp_direct": [], "llama_cpp_server": []}
    try:
        for p in procs:
            p.wait_ready(120)
        base = f"http://127.0.0.1:{port}/v1"
        _offload_once(gateway.url, status.url, env.api_key, max_tokens)  # warm-up: model load, first job
        _server_once(base, max_tokens)
        for rnd in range(rounds):
            names = list(results)
            for name in names[rnd % 3:] + names[:rnd % 3]:
                if name == "offload":
                    out = _offload_once(gateway.url, status.url, env.api_key, max_tokens)
                elif name == "llama_cpp_server":
                    out = _server_once(base, max_tokens)
                else:
                    out = _direct(1, threads, max_tokens)[0]
                results[name].append(out)
                print(f"  llm round {rnd + 1} {name}: ttft {out['ttft_s'] * 1000:.0f} ms, "
                      f"{out['tps']:.1f} tokens/s ({out['tokens']} tokens)", flush=True)
        rss = {"offload-worker-llm": worker.rss_mib(), "llama-cpp-server": llama_server.rss_mib(),
               "offload-status": status.rss_mib()}
    finally:
        for p in procs:
            p.stop()
        server.client().flushall()

    def fig(name: str, key: str) -> dict[str, Any]:
        return summary([x[key] * (1000 if key == "ttft_s" else 1) for x in results[name]])

    return {
        "threads": threads, "max_tokens": max_tokens, "prompt": PROMPT,
        "tokens": {name: [x["tokens"] for x in xs] for name, xs in results.items()},
        "ttft_ms": {name: fig(name, "ttft_s") for name in results},
        "tps": {name: fig(name, "tps") for name in results},
        "ratio_tps_vs_direct": summary([o["tps"] / d["tps"] for o, d in
                                           zip(results["offload"], results["llama_cpp_direct"])]),
        "ratio_tps_vs_server": summary([o["tps"] / d["tps"] for o, d in
                                           zip(results["offload"], results["llama_cpp_server"])]),
        "rss_mib": rss,
    }
