"""Submit path: `POST /v1/jobs/llm` answered per second, with p50/p99, from a separate load
process (wrk), against a bare FastAPI endpoint doing one Redis transaction on the same server.

Max throughput: closed loop, `connections` connections, as fast as answers come. Then Offload
alone at fixed fractions of its own maximum (wrk paces each connection), to find the highest
rate it sustains with p99 under 10 ms.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .offload import LLM_PAYLOAD, OffloadEnv
from .procs import REPO, VENV_BIN, Proc, RedisServer, free_port
from .stats import summary

WRK_SCRIPT = REPO / "bench" / "wrk" / "post.lua"
P99_BUDGET_MS = 10.0


def bare_server(redis_url: str, log_dir: Path) -> Proc:
    port = free_port()
    # The same uvicorn, event loop and HTTP parser the gateway runs with (offload_core.web.serve).
    argv = [str(VENV_BIN / "uvicorn"), "bench.bare_app:app", "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "--log-level", "warning"]
    return Proc("bare-fastapi", argv, {"BENCH_REDIS_URL": redis_url}, log_dir, port=port)


def wrk(url: str, key: str, *, seconds: float, connections: int, delay_ms: float = 0) -> dict[str, Any]:
    env = {**os.environ, "BENCH_BODY": LLM_PAYLOAD.decode(), "BENCH_KEY": key, "BENCH_DELAY_MS": f"{delay_ms:.3f}"}
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s", "-s", str(WRK_SCRIPT),
            f"{url}/v1/jobs/llm"]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-1000:]} {out.stderr[-1000:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(raw["errors"].values())
    seconds_run = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    return {"rps": (raw["requests"] - raw["errors"]["status"]) / seconds_run, "requests": raw["requests"],
            "errors": errors, "error_detail": raw["errors"],
            "p50_ms": lat["p50"] / 1000, "p90_ms": lat["p90"] / 1000, "p99_ms": lat["p99"] / 1000,
            "p999_ms": lat["p999"] / 1000, "max_ms": lat["max"] / 1000}


def run(server: RedisServer, log_dir: Path, *, rounds: int, seconds: float, connections: int,
        fractions: list[float], gateway_env: dict[str, str] | None = None) -> dict[str, Any]:
    env = OffloadEnv(server.url, log_dir)
    gateway = env.gateway(**(gateway_env or {})).start()
    bare = bare_server(server.url, log_dir).start()
    targets = {"bare": (bare.url, ""), "offload": (gateway.url, env.api_key)}
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "offload": []}
    r = server.client()
    try:
        for name, (url, key) in targets.items():  # warm both (imports, connections, caches)
            wrk(url, key, seconds=1, connections=connections)
        for rnd in range(rounds):
            order = ["bare", "offload"] if rnd % 2 == 0 else ["offload", "bare"]
            for name in order:
                r.flushall()
                url, key = targets[name]
                out = wrk(url, key, seconds=seconds, connections=connections)
                runs[name].append(out)
                print(f"  submit round {rnd + 1} {name}: {out['rps']:.0f} req/s p50 {out['p50_ms']:.1f} ms "
                      f"p99 {out['p99_ms']:.1f} ms errors {out['errors']}", flush=True)
        max_rps = summary([x["rps"] for x in runs["offload"]])["median"]
        paced: list[dict[str, Any]] = []
        paced_connections = 8
        for fraction in fractions:
            r.flushall()
            target = max_rps * fraction
            # Each connection sends, waits for the answer, then pauses (on average: pause = interval - ~1 ms answer; post.lua).
            delay_ms = max(0.0, 1000 * paced_connections / target - 1.0)
            out = wrk(gateway.url, env.api_key, seconds=seconds, connections=paced_connections, delay_ms=delay_ms)
            out.update(fraction=fraction, target_rps=target)
            paced.append(out)
            print(f"  submit paced {fraction:.2f}x: {out['rps']:.0f} req/s p50 {out['p50_ms']:.1f} ms "
                  f"p99 {out['p99_ms']:.1f} ms", flush=True)
        r.flushall()
    finally:
        r.close()
        gateway.stop()
        bare.stop()

    def figures(name: str) -> dict[str, Any]:
        xs = runs[name]
        return {key: summary([x[key] for x in xs]) for key in ("rps", "p50_ms", "p99_ms")} | {
            "errors": sum(x["errors"] for x in xs)}

    within = [p for p in paced if p["p99_ms"] < P99_BUDGET_MS and p["errors"] == 0]
    half = min(paced, key=lambda p: abs(p["fraction"] - 0.5)) if paced else None
    return {
        "connections": connections, "seconds": seconds, "load_generator": "wrk -t1 (same machine)",
        "bare": figures("bare"), "offload": figures("offload"),
        "ratio_rps": summary([o["rps"] / b["rps"] for o, b in zip(runs["offload"], runs["bare"])]),
        "paced": paced,
        "sustained_rps_p99_under_10ms": max((p["rps"] for p in within), default=0.0),
        "half_max": half,
    }


if __name__ == "__main__":  # a quick look: python -m bench.submit
    srv = RedisServer().start()
    try:
        print(json.dumps(run(srv, Path("/tmp"), rounds=1, seconds=3, connections=32, fractions=[0.5]), indent=1))
    finally:
        srv.cleanup()
    sys.exit(0)
