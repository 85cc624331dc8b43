"""Results -> the tables of BENCHMARKS.md and the charts under docs/bench/.

`write_charts(results, folder)` draws the PNGs; `tables(results)` returns one Markdown block per
section; `update_document(path, results)` replaces the blocks between
`<!-- bench:<section> -->` and `<!-- /bench:<section> -->` markers, leaving the prose alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .stats import spread_pct  # noqa: E402

TARGETS = {
    "submit_ratio": 0.5, "submit_p99_ms": 10.0, "worker_ratio": 0.8, "latency_ratio": 2.0,
    "ocr_vs_pytesseract": 3.0, "ocr_vs_tesserocr": 0.95, "llm_vs_direct": 0.95,
    "sse_read_p99_ms": 100.0, "sse_delivery_p99_ms": 100.0, "llm_streams_vs_direct": 0.9,
}


def _f(fig: dict[str, Any], digits: int = 0) -> str:
    """median (min-max)."""
    fmt = f"{{:,.{digits}f}}"
    if fig.get("n", 1) == 1:
        return fmt.format(fig["median"])
    return f"{fmt.format(fig['median'])} ({fmt.format(fig['min'])}–{fmt.format(fig['max'])})"


def _x(fig: dict[str, Any]) -> str:
    return f"{fig['median']:.2f}× ({fig['min']:.2f}–{fig['max']:.2f})" if fig.get("n", 1) > 1 else f"{fig['median']:.2f}×"


def _mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _load(section: dict[str, Any]) -> str:
    load = section.get("_load")
    return f"\n\nLoad average (1 min) during this section: {load['min']}–{load['max']} (mean {load['mean']})." if load else ""


def ceiling_table(c: dict[str, Any]) -> str:
    rb, o, k = c["redis_benchmark"], c["offload_per_job"], c["celery_per_job"]
    t1 = _table(["redis-benchmark (32 clients, no pipelining)", "ops/s"],
                [["LPUSH", _f(rb["lpush"])], ["RPOP", _f(rb["rpop"])]])
    t2 = _table(["per job", "Offload (HTTP submit + worker)", "raw Celery, same guarantees"], [
        ["client round trips", f"{o['round_trips']:.1f}", f"{k['round_trips']:.1f} (incl. the caller's result.get)"],
        ["commands run by Redis (incl. inside Lua)", f"{o['in_redis']:.1f}", f"{k['in_redis']:.1f}"],
        ["Redis CPU per job", f"{o['redis_cpu_us']:.0f} µs", f"{k['redis_cpu_us']:.0f} µs"],
    ])
    cmds = ", ".join(f"{name} {n:g}" for name, n in o["by_command"].items() if n >= 0.5)
    t3 = (f"Offload's commands per job: {cmds}.\n\nCeiling from round trips: "
          f"{c['ceiling_jobs_per_s_round_trips']:,.0f} jobs/s; from Redis CPU (one Redis core): "
          f"{c['ceiling_jobs_per_s_redis_cpu']:,.0f} jobs/s.")
    return f"{t1}\n\n{t2}\n\n{t3}{_load(c)}"


def submit_table(s: dict[str, Any]) -> str:
    b, o = s["bare"], s["offload"]
    t1 = _table(["endpoint", "req/s", "p50 ms", "p99 ms", "errors"], [
        ["bare FastAPI + one Redis MULTI", _f(b["rps"]), _f(b["p50_ms"], 1), _f(b["p99_ms"], 1), str(b["errors"])],
        ["Offload gateway `POST /v1/jobs/llm`", _f(o["rps"]), _f(o["p50_ms"], 1), _f(o["p99_ms"], 1), str(o["errors"])],
    ])
    ratio = s["ratio_rps"]
    t2 = _table(["paced (8 connections)", "target req/s", "achieved req/s", "p50 ms", "p99 ms"], [
        [f"{p['fraction']:.2f}× max", f"{p['target_rps']:,.0f}", f"{p['rps']:,.0f}", f"{p['p50_ms']:.1f}",
         f"{p['p99_ms']:.1f}"] for p in s["paced"]])
    half = s.get("half_max") or {}
    lines = [
        f"Throughput ratio Offload / bare: {_x(ratio)} (target ≥ {TARGETS['submit_ratio']}×: {_mark(ratio['median'] >= TARGETS['submit_ratio'])}).",
        f"p99 at half of Offload's maximum: {half.get('p99_ms', float('nan')):.1f} ms (target < 10 ms: "
        f"{_mark(half.get('p99_ms', 1e9) < TARGETS['submit_p99_ms'])}).",
        f"Highest paced rate with p99 < 10 ms: {s['sustained_rps_p99_under_10ms']:,.0f} req/s.",
    ]
    return f"{t1}\n\n{t2}\n\n" + "\n".join(f"- {x}" for x in lines) + _load(s)


def worker_table(w: dict[str, Any]) -> str:
    systems = w["systems"]
    base = systems.get("celery-guaranteed")
    off = systems["offload"]
    rows = []
    for name, s in sorted(systems.items(), key=lambda kv: -kv[1]["jobs_per_s"]["median"]):
        rel = f"{off['jobs_per_s']['median'] / s['jobs_per_s']['median']:.2f}×" if name != "offload" else "—"
        rows.append([s["label"], _f(s["jobs_per_s"]), f"±{spread_pct(s['jobs_per_s']):.0f}%", rel,
                     str(min(s["recorded"]))])
    text = _table(["system (2 worker processes)", "jobs/s", "spread", "Offload ÷ this", "results recorded (min)"], rows)
    if base:
        r = w.get("ratio_vs_celery_guaranteed") or {"median": off["jobs_per_s"]["median"] / base["jobs_per_s"]["median"], "n": 1}
        text += (f"\n\nOffload / raw Celery with the same guarantees: {_x(r)} (target ≥ {TARGETS['worker_ratio']}×: "
                 f"{_mark(r['median'] >= TARGETS['worker_ratio'])}).")
    skipped = w.get("skipped")
    if skipped:
        text += f"\n\nNot measured: {skipped}."
    return text + _load(w)


def latency_table(q: dict[str, Any], p: dict[str, Any] | None) -> str:
    text = _table(["idle workers, enqueue → start", "p50 ms", "p99 ms"], [
        ["Offload", _f(q["offload"]["p50_ms"], 2), _f(q["offload"]["p99_ms"], 2)],
        ["raw Celery, same guarantees", _f(q["celery"]["p50_ms"], 2), _f(q["celery"]["p99_ms"], 2)],
    ])
    r = q["ratio_p50"]
    text += f"\n\np50 ratio Offload / Celery: {_x(r)} (target ≤ {TARGETS['latency_ratio']}×: {_mark(r['median'] <= TARGETS['latency_ratio'])})."
    if p:
        hs = p["high_start_ms"]
        text += "\n\n" + _table(["priority", "value"], [
            ["`low` jobs queued ahead", f"{p['backlog']:,} (still {min(p['low_depth_when_probed']):,}+ queued at each probe)"],
            ["one `low` job's duration (median)", f"{p['low_job_ms']:.1f} ms"],
            ["`high` job enqueue → start", f"median {hs['median']:.1f} ms, max {hs['max']:.1f} ms over {hs['n']} probes"],
            ["budget (one job + 20 ms)", f"{p['budget_ms']:.1f} ms: {_mark(p['within_budget'])}"],
        ])
    return text + _load(q)


def ocr_table(o: dict[str, Any]) -> str:
    labels = {"offload": "Offload `offload-worker-ocr` (jobs back to back)", "tesserocr": "tesserocr called directly",
              "pytesseract": "pytesseract, Debian Tesseract, defaults",
              "pytesseract_omp1": "pytesseract, Debian Tesseract, OMP_THREAD_LIMIT=1"}
    rows = [[labels[k], _f(v, 2)] for k, v in sorted(o["pages_per_s"].items(), key=lambda kv: -kv[1]["median"])]
    text = _table([f"one process, {o['pages']} A4 pages at 300 dpi", "pages/s"], rows)
    a, b, c = o["ratio_vs_pytesseract"], o["ratio_vs_tesserocr"], o["ratio_vs_pytesseract_omp1"]
    text += (f"\n\n- Offload / pytesseract (defaults): {_x(a)} (target ≥ 3×: {_mark(a['median'] >= 3)})"
             f"\n- Offload / pytesseract (OMP_THREAD_LIMIT=1): {_x(c)}"
             f"\n- Offload / tesserocr direct: {_x(b)} (target ≥ 0.95×: {_mark(b['median'] >= 0.95)})")
    return text + _load(o)


def llm_table(m: dict[str, Any]) -> str:
    labels = {"offload": "Offload (gateway → worker-llm, llama.cpp in process → SSE)",
              "llama_cpp_direct": "llama.cpp called directly (llama-cpp-python)",
              "llama_cpp_server": "`llama_cpp.server`, streamed over HTTP"}
    rows = [[labels[k], _f(m["tps"][k], 1), _f(m["ttft_ms"][k], 0), str(max(m["tokens"][k]))] for k in labels]
    text = _table([f"{m['max_tokens']} tokens max, {m['threads']} thread(s), temperature 0", "tokens/s", "time to first token, ms", "tokens"], rows)
    r = m["ratio_tps_vs_direct"]
    text += (f"\n\nOffload / llama.cpp direct, tokens/s: {_x(r)} (target ≥ 0.95×: {_mark(r['median'] >= 0.95)}); "
             f"Offload / llama_cpp.server: {_x(m['ratio_tps_vs_server'])}.")
    return text + _load(m)


def llm_streams_table(m: dict[str, Any]) -> str:
    labels = {"offload": f"Offload: gateway → one `offload-worker-llm` process ({m['in_flight']} streams) → SSE",
              "direct": f"asyncio client straight to the server, {m['in_flight']} requests in flight"}
    rows = [[labels[k], _f(m["jobs_per_s"][k], 1), _f(m["tokens_per_s"][k]), _f(m["ttft_p50_ms"][k]),
             _f(m["ttft_max_ms"][k])] for k in labels]
    text = _table([f"{m['jobs']} jobs × {m['tokens']} tokens; server: {m['ttft_s'] * 1000:.0f} ms to first token, "
                   f"{m['itl_s'] * 1000:.0f} ms/token", "jobs/s", "tokens/s", "TTFT p50 ms", "TTFT max ms"], rows)
    r = m["ratio_jobs_per_s"]
    rss = m["worker_rss_mib"]
    text += (f"\n\nOffload / direct, jobs/s: {_x(r)} (target ≥ {TARGETS['llm_streams_vs_direct']}×: "
             f"{_mark(r['median'] >= TARGETS['llm_streams_vs_direct'])}). The worker pod's RSS after the runs: "
             f"{rss['total']:.0f} MiB ({rss['processes']} process). Most streams the server saw at once: "
             f"{m['server_peak_in_flight']}. Offload's TTFT is an SSE client's, from its POST, on {m['followed']} "
             "followed jobs per round; the direct client's is from its request.")
    return text + _load(m)


def batches_table(m: dict[str, Any]) -> str:
    labels = {"singles": f"{m['jobs']} × `POST /v1/jobs/llm`, 32 at a time",
              "batch": f"one `POST /v1/files` ({m['file_bytes'] / 1024:.0f} KiB JSONL) + one `POST /v1/batches`"}
    rows = [[labels[k], _f(m["submit_s"][k], 2), _f(m["jobs_per_s"][k], 1)] for k in labels]
    text = _table([f"{m['jobs']} chat requests × {m['tokens']} tokens; server: {m['ttft_s'] * 1000:.0f} ms to first "
                   f"token, {m['itl_s'] * 1000:.0f} ms/token", "submit s", "jobs/s (to the last answer)"], rows)
    text += (f"\n\nBatch / singles: submit {_x(m['ratio_submit'])} faster; jobs/s {_x(m['ratio_jobs_per_s'])}.")
    return text + _load(m)


def footprint_table(f: dict[str, Any], llm: dict[str, Any] | None) -> str:
    rows = []
    for name, v in f.items():
        if name == "images" or name.startswith("_"):
            continue
        idle, loaded = v["idle"], v.get("loaded", {})
        rows.append([name, f"{idle['total']:.0f} ({idle['processes']} proc.)",
                     f"{loaded.get('total', float('nan')):.0f}"])
    if llm:
        for name, v in llm["rss_mib"].items():
            rows.append([f"{name} (after the LLM runs, model loaded)", "—", f"{v['total']:.0f} ({v['processes']} proc.)"])
    text = _table(["process (tree)", "idle RSS MiB", "loaded RSS MiB"], rows)
    per_job = f.get("_redis_per_finished_llm_job")
    if per_job:
        text += (f"\n\nRedis memory kept by a finished small LLM job (16 tokens, submitted with an Idempotency-Key; "
                 f"{per_job['jobs']} jobs, after their event streams' grace): "
                 f"**{per_job['bytes_per_job'] / 1024:.1f} KB** per job, {per_job['keys_per_job']:.1f} keys per job "
                 f"(its record alone: {per_job['record_bytes']:,} bytes).")
    images = f.get("images", {})
    if images.get("mib"):
        text += "\n\n" + _table(["image", "size MiB"], [[k, f"{v:.0f}"] for k, v in images["mib"].items()])
    else:
        text += f"\n\nImages: {images.get('note', 'not measured')}."
    return text


def autoscale_table(a: dict[str, Any]) -> str:
    rows = []
    for name, s in a["scenarios"].items():
        rows.append([f"minReplicaCount {s['min_replicas']}", f"{s['first_work_s']:.0f} s",
                     f"{s['drained_at_s']:.0f} s" if s["drained_at_s"] is not None else "not drained",
                     f"{s['peak_replicas']:.0f}",
                     f"{s['back_to_min_s']:.0f} s" if s["back_to_min_s"] is not None else "—",
                     f"{s['replica_seconds'] / 60:.0f}"])
    cfg = a["chart"]
    head = (f"Burst of {a['burst']:,} jobs at t=0; {a['per_replica_jobs_per_s']:.2f} jobs/s per replica (measured OCR "
            f"pages/s of one worker process); pods work {a['pod_start_s']:.0f} s after they are asked for. Chart values "
            f"({a['worker']}): listLength {cfg['listLength']}, pollingInterval {cfg['pollingInterval']} s, cooldownPeriod "
            f"{cfg['cooldownPeriod']} s, max {cfg['maxReplicaCount']}, scale-up {cfg['scaleUp']['policies'][0]['value']} pods "
            f"per {cfg['scaleUp']['policies'][0]['periodSeconds']} s, scale-down window "
            f"{cfg['scaleDown']['stabilizationWindowSeconds']} s.\n\n")
    return head + _table(["scenario", "first job starts", "backlog drained", "peak replicas", "back at minimum", "replica-minutes"], rows)


def recovery_table(r: dict[str, Any]) -> str:
    st, sc = r["settings"], r["scheduled"]
    rec = r["running_again_after_kill_s"]
    return _table(["measured at the shipped settings", "figure"], [
        [f"whole worker killed mid-job ({r['kills']} kills; a replacement started at once): kill → `running` again",
         f"median {rec['median']:.1f} s, min {rec['min']:.1f} s, max {rec['max']:.1f} s"],
        [f"{sc['jobs']} jobs scheduled over {sc['spread_s']:.0f} s: start − `run_at`",
         f"median {sc['start_error_s']['median']:.3f} s, max {sc['max_s']:.3f} s; in order: "
         f"{'yes' if sc['in_order'] else '**no**'}"],
    ]) + (f"\n\nSettings: visibility timeout {st['visibility_timeout_s']} s, lease {st['lease_s']} s, lease reaper every "
          f"{st['lease_reaper_s']} s, delayed-set poll {st['delayed_poll_s']} s." + _load(r))


def sse_table(e: dict[str, Any]) -> str:
    n = e["followers"]
    text = _table([f"{n:,} followers on one status process, {e['seconds']:.0f} s of events", "p50 ms", "p99 ms"], [
        ["another tenant's `GET /v1/jobs/{id}`", _f(e["read_p50_ms"], 1), _f(e["read_p99_ms"], 1)],
        ["`GET /readyz`", "—", _f(e["readyz_p99_ms"], 1)],
        ["event written → follower has it", _f(e["delivery_p50_ms"], 1), _f(e["delivery_p99_ms"], 1)],
    ])
    read, delivery = e["read_p99_ms"]["median"], e["delivery_p99_ms"]["median"]
    lines = [
        f"Another tenant's read p99 < {TARGETS['sse_read_p99_ms']:.0f} ms: {_mark(read < TARGETS['sse_read_p99_ms'])}; "
        f"event delivery p99 < {TARGETS['sse_delivery_p99_ms']:.0f} ms: "
        f"{_mark(delivery < TARGETS['sse_delivery_p99_ms'])}.",
        f"Events: {min(e['events_sent']):,}+ written per round, one per job every {e['event_interval_s']:g} s; "
        f"followers that got exactly their job's events, in order, once: {min(e['followers_exact']):,} of {n:,} "
        f"(every round); failed reads: {max(e['errors'])}.",
        f"The status process: {max(e['status_redis_connections'])} Redis connections at most, "
        f"{_f(e['status_cpu_percent'])}% CPU, {_f(e['status_rss_mib'])} MiB RSS; all {n:,} streams open in "
        f"{_f(e['open_seconds'], 1)} s.",
        f"Slowest delivery: {_f(e['delivery_max_ms'])} ms.",
    ]
    return f"{text}\n\n" + "\n".join(f"- {x}" for x in lines) + _load(e)


def tables(results: dict[str, Any]) -> dict[str, str]:
    s = results["sections"]
    out: dict[str, str] = {}
    if "ceiling" in s:
        out["ceiling"] = ceiling_table(s["ceiling"])
    if "submit" in s:
        out["submit"] = submit_table(s["submit"])
    if "worker" in s:
        out["worker"] = worker_table(s["worker"])
    if "latency" in s:
        out["latency"] = latency_table(s["latency"], s.get("priority"))
    if "ocr" in s:
        out["ocr"] = ocr_table(s["ocr"])
    if "llm" in s:
        out["llm"] = llm_table(s["llm"])
    if "llm_streams" in s:
        out["llm_streams"] = llm_streams_table(s["llm_streams"])
    if "batches" in s:
        out["batches"] = batches_table(s["batches"])
    if "footprint" in s:
        out["footprint"] = footprint_table(s["footprint"], s.get("llm"))
    if "autoscale" in s:
        out["autoscale"] = autoscale_table(s["autoscale"])
    if "recovery" in s:
        out["recovery"] = recovery_table(s["recovery"])
    if "sse" in s:
        out["sse"] = sse_table(s["sse"])
    m = results["machine"]
    pk = ", ".join(f"{k} {v}" for k, v in {**m["packages"], **m.get("peers", {})}.items())
    out["machine"] = (f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}; "
                      f"{', '.join(m['tools'].values())}. Packages: {pk}. Run started {m['started_at']}, "
                      f"profile `{results['profile']}`, {results['rounds']} rounds.")
    return out


def update_document(path: Path, results: dict[str, Any]) -> list[str]:
    """Replace each marked block in `path`; returns the sections replaced."""
    text = path.read_text()
    done = []
    for section, body in tables(results).items():
        pattern = re.compile(rf"(<!-- bench:{section} -->\n)(?:.*?\n)?(<!-- /bench:{section} -->)", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
            done.append(section)
    path.write_text(text)
    return done


# -- charts ----------------------------------------------------------------------------------------


def _bars(ax, names: list[str], figs: list[dict[str, Any]], unit: str, colors: list[str]) -> None:
    med = [f["median"] for f in figs]
    err = [[m - f["min"] for m, f in zip(med, figs)], [f["max"] - m for m, f in zip(med, figs)]]
    ax.barh(names, med, xerr=err, color=colors, capsize=3)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    for i, m in enumerate(med):
        ax.text(m, i, f"  {m:,.0f}" if m >= 10 else f"  {m:.2f}", va="center", fontsize=8)


def write_charts(results: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    s = results["sections"]
    written: list[Path] = []

    def save(fig, name: str) -> None:
        path = folder / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    if "worker" in s:
        items = sorted(s["worker"]["systems"].items(), key=lambda kv: -kv[1]["jobs_per_s"]["median"])
        fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(items) + 1.2))
        _bars(ax, [v["label"] for _, v in items], [v["jobs_per_s"] for _, v in items], "jobs/s (median, min–max)",
              ["#d9534f" if k == "offload" else "#5b8def" for k, _ in items])
        ax.set_title("Worker path: queued → recorded result, no-op jobs")
        save(fig, "worker_path.png")
    if "submit" in s:
        sub = s["submit"]
        fig, ax = plt.subplots(figsize=(7, 3.6))
        paced = sub["paced"]
        ax.plot([p["rps"] for p in paced], [p["p50_ms"] for p in paced], "o-", label="Offload p50")
        ax.plot([p["rps"] for p in paced], [p["p99_ms"] for p in paced], "o-", label="Offload p99")
        ax.axhline(10, color="grey", ls="--", lw=1, label="10 ms")
        ax.axvline(sub["offload"]["rps"]["median"], color="#d9534f", ls=":", lw=1, label="Offload max (32 conn.)")
        ax.axvline(sub["bare"]["rps"]["median"], color="#5b8def", ls=":", lw=1, label="bare endpoint max")
        ax.set_xlabel("requests/s")
        ax.set_ylabel("latency ms")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.set_title("Submit path: latency at paced rates")
        save(fig, "submit_latency.png")
    if "ocr" in s:
        items = sorted(s["ocr"]["pages_per_s"].items(), key=lambda kv: -kv[1]["median"])
        fig, ax = plt.subplots(figsize=(7, 2.6))
        _bars(ax, [k for k, _ in items], [v for _, v in items], "pages/s, one process", 
              ["#d9534f" if k == "offload" else "#5b8def" for k, _ in items])
        ax.set_title("OCR throughput (A4, 300 dpi)")
        save(fig, "ocr.png")
    if "llm" in s:
        m = s["llm"]
        names = list(m["tps"])
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 2.6))
        colors = ["#d9534f" if k == "offload" else "#5b8def" for k in names]
        _bars(a1, names, [m["tps"][k] for k in names], "tokens/s", colors)
        _bars(a2, names, [m["ttft_ms"][k] for k in names], "time to first token, ms", colors)
        a2.set_yticklabels([])
        fig.suptitle("LLM, SmolLM2-135M on llama.cpp", fontsize=10)
        save(fig, "llm.png")
    if "autoscale" in s:
        a = s["autoscale"]
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 4.8), sharex=True)
        for name, sc in a["scenarios"].items():
            tl = [p for p in sc["timeline"] if p["t"] <= (sc["back_to_min_s"] or sc["timeline"][-1]["t"]) + 60]
            label = f"min {sc['min_replicas']}"
            top.plot([p["t"] for p in tl], [p["backlog"] for p in tl], label=label)
            bottom.step([p["t"] for p in tl], [p["replicas"] for p in tl], where="post", label=f"{label}: asked")
            bottom.step([p["t"] for p in tl], [p["working"] for p in tl], where="post", ls="--", label=f"{label}: working")
        top.set_ylabel("queued jobs")
        top.legend(fontsize=7)
        bottom.set_ylabel("replicas")
        bottom.set_xlabel("seconds after the burst")
        bottom.legend(fontsize=7)
        top.set_title(f"Simulated KEDA/HPA: burst of {a['burst']:,} OCR jobs (chart values)")
        save(fig, "autoscale.png")
    return written
