"""`python -m bench`: run the benchmarks, write results JSON, charts and BENCHMARKS.md's tables.

    python -m bench                       # the full run (`make bench`)
    python -m bench --profile quick       # seconds, not minutes: the harness's smoke test
    python -m bench --sections worker,submit --rounds 5

Each section gets its own redis-server (AOF on, everysec, as the chart's bundled Redis).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import (autoscale, batches, ceiling, footprint, latency, live_events, llm, llm_streams, ocr, recovery, report,
               submit, worker_path)
from .machine import LoadSampler, describe
from .procs import REPO, RedisServer

SECTIONS = ("ceiling", "submit", "worker", "latency", "ocr", "llm", "llm_streams", "batches", "footprint", "autoscale",
            "sse", "recovery")


@dataclass
class Profile:
    rounds: int
    redis_requests: int
    monitor_jobs: int
    submit_seconds: float
    submit_fractions: list[float]
    worker_window: float
    worker_n_cap: int
    latency_per_round: int
    priority_backlog: int
    priority_probes: int
    ocr_png_pages: int
    ocr_pdf_pages: int
    llm_max_tokens: int
    llm_threads: int
    footprint_seconds: float
    autoscale_burst: int
    recovery_kills: int = 10
    scheduled_jobs: int = 100
    pod_start_s: float = 10.0
    # LLM rounds are seconds each and the most sensitive to a busy neighbour: more of them.
    llm_rounds_factor: int = 1
    # Live events: followers on one status process, and how long the events flow.
    sse_followers: int = 1000
    sse_seconds: float = 20
    # Many streams through one LLM worker pod against the simulator: jobs and tokens per job.
    llm_stream_jobs: int = 256
    llm_stream_tokens: int = 64
    # A batch of this many chat lines against as many single submits (the simulator answers).
    batch_jobs: int = 1000
    extra: dict[str, Any] = field(default_factory=dict)


PROFILES = {
    "full": Profile(rounds=3, redis_requests=200_000, monitor_jobs=200, submit_seconds=6,
                    submit_fractions=[0.2, 0.35, 0.5, 0.65, 0.8], worker_window=5, worker_n_cap=6000,
                    latency_per_round=60, priority_backlog=2000, priority_probes=5, ocr_png_pages=4,
                    ocr_pdf_pages=2, llm_max_tokens=128, llm_threads=1, footprint_seconds=4, autoscale_burst=2000,
                    llm_rounds_factor=3),
    "quick": Profile(rounds=1, redis_requests=5_000, monitor_jobs=10, submit_seconds=1, submit_fractions=[0.5],
                     worker_window=1, worker_n_cap=300, latency_per_round=8, priority_backlog=100, priority_probes=2,
                     ocr_png_pages=1, ocr_pdf_pages=0, llm_max_tokens=8, llm_threads=1, footprint_seconds=1,
                     autoscale_burst=200, sse_followers=50, sse_seconds=2, recovery_kills=1, scheduled_jobs=10,
                     llm_stream_jobs=32, llm_stream_tokens=8, batch_jobs=100),
}

DEFAULT_PEERS_BIN = Path.home() / ".cache" / "offload" / "bench" / "peers" / "bin"


def peer_versions(peers_bin: Path) -> dict[str, str]:
    import subprocess

    code = ("import importlib.metadata as m, json; print(json.dumps({d: m.version(d) for d in "
            "('rq', 'arq', 'dramatiq', 'taskiq', 'taskiq-redis')}))")
    out = subprocess.run([str(peers_bin / "python"), "-c", code], capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of: {', '.join(SECTIONS)}")
    parser.add_argument("--rounds", type=int, help="override the profile's rounds")
    parser.add_argument("--systems", default="", help="worker-path systems to run (default: all available)")
    parser.add_argument("--peers-bin", type=Path, default=Path(os.environ.get("BENCH_PEERS_BIN", DEFAULT_PEERS_BIN)),
                        help="bin/ of the venv holding RQ, arq, Dramatiq and taskiq (make bench-peers)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "results.json")
    parser.add_argument("--charts", type=Path, default=REPO / "docs" / "bench")
    parser.add_argument("--doc", type=Path, help="update the marked tables of this Markdown file (BENCHMARKS.md)")
    parser.add_argument("--logs", type=Path, help="where process logs go (default: a temporary folder)")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: redraw the charts and tables from the --out results file")
    args = parser.parse_args(argv)
    if args.report_only:
        return _report(json.loads(args.out.read_text()), args)

    profile = PROFILES[args.profile]
    if args.rounds:
        profile.rounds = args.rounds
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    for tool in ("redis-server", "redis-benchmark", "wrk"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (make bench installs it from Debian)")
    peers_ok = (args.peers_bin / "python").exists()
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="offload-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"profile": args.profile, "rounds": profile.rounds, "settings": asdict(profile),
                               "machine": describe(peer_versions(args.peers_bin) if peers_ok else {}),
                               "sections": {}}
    print(f"bench: profile {args.profile}, sections {', '.join(sections)}, logs in {log_dir}", flush=True)
    started = time.monotonic()
    for name in sections:
        print(f"bench: {name}", flush=True)
        server = RedisServer().start()
        t0 = time.monotonic()
        try:
            with LoadSampler() as load:
                out = _run_section(name, profile, server, log_dir, args, peers_ok, results)
        finally:
            server.cleanup()
        out["_load"] = load.figure()
        out["_seconds"] = round(time.monotonic() - t0, 1)
        results["sections"][name] = out
        if name == "latency" and "priority" in out:
            results["sections"]["priority"] = out.pop("priority")
    results["seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    return _report(results, args)


def _report(results: dict[str, Any], args: argparse.Namespace) -> int:
    charts = report.write_charts(results, args.charts)
    print(f"bench: results in {args.out}; charts: {', '.join(str(c) for c in charts)}", flush=True)
    if args.doc:
        print(f"bench: updated {args.doc}: {', '.join(report.update_document(args.doc, results))}", flush=True)
    for body in report.tables(results).values():
        print("\n" + body)
    return 0


def _run_section(name: str, p: Profile, server: RedisServer, log_dir: Path, args: argparse.Namespace,
                 peers_ok: bool, results: dict[str, Any]) -> dict[str, Any]:
    if name == "ceiling":
        return ceiling.run(server, log_dir, rounds=p.rounds, requests=p.redis_requests, monitor_jobs=p.monitor_jobs)
    if name == "submit":
        return submit.run(server, log_dir, rounds=p.rounds, seconds=p.submit_seconds, connections=32,
                          fractions=p.submit_fractions)
    if name == "worker":
        systems = [worker_path.offload_system(log_dir, server.url), worker_path.celery_system("guaranteed"),
                   worker_path.celery_system("defaults")]
        skipped = ""
        if peers_ok:
            systems += worker_path.peer_systems(args.peers_bin)
        else:
            skipped = f"RQ, arq, Dramatiq, taskiq (no peers venv at {args.peers_bin}; `make bench-peers`)"
        if args.systems:
            wanted = args.systems.split(",")
            systems = [s for s in systems if s.name in wanted]
        out = worker_path.run(systems, server, log_dir, rounds=p.rounds, window=p.worker_window, n_cap=p.worker_n_cap)
        if "celery-guaranteed" in out["systems"]:
            from .stats import summary

            off = out["systems"]["offload"]["jobs_per_s"]["samples"]
            cel = out["systems"]["celery-guaranteed"]["jobs_per_s"]["samples"]
            out["ratio_vs_celery_guaranteed"] = summary([a / b for a, b in zip(off, cel)])
        out["skipped"] = skipped
        return out
    if name == "latency":
        out = latency.queue_latency(server, log_dir, rounds=p.rounds, per_round=p.latency_per_round)
        out["priority"] = latency.priority(server, log_dir, backlog=p.priority_backlog, job_seconds=0.01,
                                           probes=p.priority_probes)
        return out
    if name == "ocr":
        return ocr.run(server, log_dir, rounds=p.rounds, png_pages=p.ocr_png_pages, pdf_pages=p.ocr_pdf_pages)
    if name == "llm":
        return llm.run(server, log_dir, rounds=p.rounds * p.llm_rounds_factor, threads=p.llm_threads,
                       max_tokens=p.llm_max_tokens)
    if name == "llm_streams":
        return llm_streams.run(server, log_dir, rounds=p.rounds, jobs=p.llm_stream_jobs, tokens=p.llm_stream_tokens,
                               followed=min(32, p.llm_stream_jobs))
    if name == "batches":
        return batches.run(server, log_dir, rounds=p.rounds, jobs=p.batch_jobs, tokens=4)
    if name == "recovery":
        return recovery.run(server, log_dir, kills=p.recovery_kills, scheduled=p.scheduled_jobs, spread_s=10.0)
    if name == "footprint":
        pages = ocr.make_documents(log_dir / "footprint-pages", 1, 0)[0]
        return footprint.run(server, log_dir, load_seconds=p.footprint_seconds, jobs=200, ocr_pages=pages)
    if name == "autoscale":
        measured = results["sections"].get("ocr", {}).get("pages_per_s", {}).get("offload", {}).get("median")
        per_replica = measured or 1.0  # without an OCR run: one page per second, said in the table
        return autoscale.run(burst=p.autoscale_burst, per_replica_jobs_per_s=per_replica, pod_start_s=p.pod_start_s)
    if name == "sse":
        return live_events.run(server, log_dir, rounds=p.rounds, followers=p.sse_followers, seconds=p.sse_seconds)
    raise ValueError(name)


if __name__ == "__main__":
    raise SystemExit(main())
