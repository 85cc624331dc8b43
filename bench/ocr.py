"""OCR: pages/s of one worker process, Offload's OCR worker against the engines underneath it.

The same documents for all: A4 pages at 300 dpi rendered from known text (tests/support), as
single-page PNGs, plus one multi-page PDF. Offload's figure is the real `offload-worker-ocr`
(concurrency 1) running the jobs back to back: pages / (last job finished - first job started),
so it includes every job's bookkeeping. The baselines run in a process of their own
(`bench.ocr_baselines`).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from offload_core.documents.formats import inspect
from offload_core.jobs import keys
from offload_core.jobs.store import NewJob
from offload_core.types import JobType, Priority
from tests.support.documents import DPI, page_image, pdf_document

from .offload import TENANT, OffloadEnv
from .procs import REPO, RedisServer, wait_for
from .stats import summary

BASELINES = {
    "tesserocr": ("tesserocr", {}),
    "pytesseract": ("pytesseract", {}),
    "pytesseract_omp1": ("pytesseract", {"OMP_THREAD_LIMIT": "1"}),
}


def make_documents(folder: Path, png_pages: int, pdf_pages: int) -> list[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    docs: list[bytes] = []
    for n in range(1, png_pages + 1):
        buf = io.BytesIO()
        page_image(n).save(buf, "PNG", dpi=(DPI, DPI))
        (folder / f"page-{n:02d}.png").write_bytes(buf.getvalue())
        docs.append(buf.getvalue())
    if pdf_pages:
        data = pdf_document(pdf_pages).data
        (folder / "document.pdf").write_bytes(data)
        docs.append(data)
    return docs


def _ocr_job(data: bytes, settings) -> NewJob:
    info = inspect(data, max_pages=settings.ocr_max_pages, max_pixels=settings.ocr_max_pixels, dpi=settings.ocr_dpi)
    params = {"languages": "eng", "filename": "bench", "kind": info.kind.value, "pages": info.pages, "bytes": len(data)}
    return NewJob(type=JobType.OCR, tenant=TENANT, priority=Priority.NORMAL, payload=data, params=params)


def offload_round(env: OffloadEnv, r: redis.Redis, docs: list[bytes]) -> dict[str, Any]:
    settings = env.settings()
    ids = env.submit([_ocr_job(d, settings) for d in docs], parallel=4)

    def done() -> bool:
        return all(r.hget(keys.job(j), "state") in (b"succeeded", b"failed", b"dead") for j in ids)

    wait_for(done, 600, "OCR jobs")
    rows = [r.hmget(keys.job(j), "state", "started_at", "finished_at", "params") for j in ids]
    if any(row[0] != b"succeeded" for row in rows):
        raise RuntimeError(f"an OCR job did not succeed: {[row[0] for row in rows]}")
    pages = sum(json.loads(row[3])["pages"] for row in rows)
    seconds = max(float(row[2]) for row in rows) - min(float(row[1]) for row in rows)
    return {"pages": pages, "seconds": seconds, "pages_per_s": pages / seconds}


def baseline_round(name: str, folder: Path) -> dict[str, Any]:
    engine, extra = BASELINES[name]
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra}
    out = subprocess.run([sys.executable, "-m", "bench.ocr_baselines", engine, str(folder)], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(server: RedisServer, log_dir: Path, *, rounds: int, png_pages: int, pdf_pages: int) -> dict[str, Any]:
    folder = log_dir / "ocr-pages"
    docs = make_documents(folder, png_pages, pdf_pages)
    env = OffloadEnv(server.url, log_dir)
    r = server.client()
    r.flushall()
    worker = env.worker("ocr", concurrency=1).start()
    results: dict[str, list[dict[str, Any]]] = {"offload": [], **{k: [] for k in BASELINES}}
    try:
        offload_round(env, r, docs[:1])  # warm-up: the model loads in the job process
        names = ["offload", *BASELINES]
        for rnd in range(rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            for name in order:
                out = offload_round(env, r, docs) if name == "offload" else baseline_round(name, folder)
                results[name].append(out)
                print(f"  ocr round {rnd + 1} {name}: {out['pages_per_s']:.2f} pages/s "
                      f"({out['pages']} pages in {out['seconds']:.1f}s)", flush=True)
        worker_rss = worker.rss_mib()
    finally:
        worker.kill()
        r.flushall()
    figures = {name: summary([x["pages_per_s"] for x in xs]) for name, xs in results.items()}

    def ratio(a: str, b: str) -> dict[str, Any]:
        return summary([x["pages_per_s"] / y["pages_per_s"] for x, y in zip(results[a], results[b])])

    return {
        "pages": results["offload"][0]["pages"], "png_pages": png_pages, "pdf_pages": pdf_pages,
        "pages_per_s": figures,
        "ratio_vs_pytesseract": ratio("offload", "pytesseract"),
        "ratio_vs_pytesseract_omp1": ratio("offload", "pytesseract_omp1"),
        "ratio_vs_tesserocr": ratio("offload", "tesserocr"),
        "worker_rss_mib_after": worker_rss,
        "tessdata": {"offload_and_tesserocr": env.settings().ocr_tessdata,
                     "pytesseract": "Debian tesseract-ocr-eng (/usr/share/tesseract-ocr/5/tessdata)"},
    }
