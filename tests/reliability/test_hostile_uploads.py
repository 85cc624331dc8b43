"""Guarantee: a hostile upload gets a clear 4xx, or a job that fails with a clear reason; it never
crashes or exhausts a worker (memory stays under the chart's limit), and the next job succeeds.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time

import psutil
import pytest

from offload_core.jobs.store import JobStore, NewJob, connect
from offload_core.settings import Settings
from offload_core.types import JobType, Priority
from tests.reliability.ledger import facts, wait_all_terminal
from tests.support import documents as docs

OCR_WORKER_MEMORY_LIMIT = 1024 * 1024 * 1024  # components.workerOcr.resources.limits.memory (1Gi)
UPLOAD_LIMIT = 2 * 1024 * 1024

HOSTILE = {
    "truncated-pdf": docs.truncated_pdf,
    "corrupt-pdf": docs.corrupt_pdf,
    "encrypted-pdf": docs.encrypted_pdf,
    "pdf-10000-pages": docs.many_pages_pdf,
    "pdf-page-200-inches": docs.huge_page_pdf,
    "png-bomb-100000x100000": docs.bomb_png,
    "tiff-ifd-loop": docs.tiff_with_ifd_loop,
    "tiff-5000-pages": docs.tiff_with_many_pages,
    "tiff-huge-second-page": docs.tiff_with_huge_second_page,
    "truncated-tiff": docs.truncated_tiff,
    "truncated-png": docs.truncated_png,
    "truncated-jpeg": docs.truncated_jpeg,
    "polyglot-png-header-then-pdf": docs.png_header_then_pdf,
    "polyglot-png-then-zip": docs.png_with_zip_appended,
    "zero-bytes": lambda: b"",
    "text-declared-as-png": lambda: b"just some text, not a document at all",
}
# Declared type and file name are the client's claims; the gateway reads the bytes instead.
DECLARED = {"text-declared-as-png": ("notes.png", "image/png")}


def _store_directly(redis_url: str, payload: bytes) -> str:
    """Store and queue an OCR job with the core library, without the gateway's checks."""
    settings = Settings(env="dev", redis_url=redis_url)

    async def submit() -> str:
        client = connect(settings)
        try:
            outcome = await JobStore(client, settings).submit(NewJob(
                type=JobType.OCR, tenant="alice", priority=Priority.NORMAL, payload=payload,
                params={"languages": "eng", "filename": "hostile", "bytes": len(payload)}))
        finally:
            await client.aclose()
        assert outcome.status == "created"
        return outcome.job_id

    return asyncio.run(submit())


class PeakRss(threading.Thread):
    """The largest resident set of a process tree, sampled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.halt = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.1):
            try:
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass


def _slow_oversized_upload(url: str, key: str, total: int, chunk: int = 64 * 1024) -> tuple[int, int, bytes]:
    """POST a chunked multipart body of `total` bytes, 64 KiB every 20 ms, until the server answers.

    Returns (bytes sent, total, the answer's first bytes)."""
    host, port = url.removeprefix("http://").split(":")
    boundary = "slowboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.pdf\"\r\n"
            "Content-Type: application/pdf\r\n\r\n%PDF-1.7\n").encode()
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall((f"POST /v1/jobs/ocr HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
    sent, answer = 0, b""
    try:
        pieces = [head] + [b"0" * chunk] * (total // chunk)
        for piece in pieces:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered: stop sending, as a well-behaved client would
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
            time.sleep(0.02)
    except OSError:
        pass  # the server closed the connection on us: its answer is already in our buffer
    try:
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sock.close()
    return sent, total, answer


@pytest.mark.slow
def test_hostile_uploads_are_refused_or_fail_clearly_and_the_worker_survives(platform_factory, store, redis_url,
                                                                             figures):
    platform = platform_factory.start(workers=("ocr",), env={"OFFLOAD_OCR_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)})
    peak = PeakRss(platform.workers["ocr"].proc.pid)
    peak.start()
    refused, accepted = {}, {}
    for name, make in HOSTILE.items():
        filename, content_type = DECLARED.get(name, ("upload.pdf", "application/pdf"))
        r = platform.submit_ocr(make(), filename, content_type=content_type)
        assert r.status_code < 500, (name, r.status_code, r.text)
        if r.status_code == 202:
            accepted[r.json()["id"]] = name
            continue
        assert 400 <= r.status_code < 500, (name, r.status_code)
        assert r.headers["content-type"].startswith("application/problem+json"), name
        refused[name] = (r.status_code, r.json()["detail"])
        assert len(r.json()["detail"]) > 20, (name, r.json())
    # A real PNG declared as a PDF: the bytes decide, and it is read.
    wrong_type = platform.submit_ocr(docs.png_document().data, "scan.pdf", content_type="application/pdf")
    assert wrong_type.status_code == 202, wrong_type.text
    good_after = platform.submit_ocr(docs.png_document().data, "after.png")

    outcome = wait_all_terminal(store, [*accepted, wrong_type.json()["id"], good_after.json()["id"]], timeout=180)
    jobs = facts(store, list(accepted))
    for job_id, name in accepted.items():
        job = jobs[job_id]
        assert job.state in ("succeeded", "failed"), (name, job)
        if job.state == "failed":
            assert job.error["retryable"] is False and len(job.error["message"]) > 20, (name, job.error)
            assert job.attempts == 1, (name, job)
    assert outcome[wrong_type.json()["id"]] == "succeeded"
    assert outcome[good_after.json()["id"]] == "succeeded"
    assert platform.workers["ocr"].proc.poll() is None, "the OCR worker died"

    # Defence in depth: the same files stored as jobs behind the gateway's back (a gateway bug,
    # or another writer of the store). The worker inspects again and fails each one, once.
    injected = {_store_directly(redis_url, make()): name for name, make in HOSTILE.items() if name != "zero-bytes"}
    wait_all_terminal(store, list(injected), timeout=180)
    behind = facts(store, list(injected))
    for job_id, name in injected.items():
        job = behind[job_id]
        assert job.state == "failed" and job.attempts == 1, (name, job)
        assert job.error["retryable"] is False and len(job.error["message"]) > 20, (name, job.error)
    last = platform.submit_ocr(docs.png_document().data, "last.png").json()["id"]
    assert wait_all_terminal(store, [last], timeout=60)[last] == "succeeded"

    sent, total, answer = _slow_oversized_upload(platform.gateway.url, platform.keys["alice"], 3 * UPLOAD_LIMIT)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < total, "the gateway read the whole oversized upload before refusing it"
    peak.halt.set()
    peak.join(5)
    assert 0 < peak.peak < OCR_WORKER_MEMORY_LIMIT, f"OCR worker peaked at {peak.peak / 2**20:.0f} MiB"
    figures.record("8-hostile-uploads", kinds=len(HOSTILE) + 2, refused_4xx=len(refused),
                   accepted_then_failed=sum(1 for j in jobs.values() if j.state == "failed"),
                   accepted_and_read=sum(1 for j in jobs.values() if j.state == "succeeded"),
                   stored_behind_gateway_failed_in_worker=len(injected),
                   slow_oversized_sent_before_413_kib=sent // 1024, slow_oversized_total_kib=total // 1024,
                   ocr_worker_peak_rss_mib=round(peak.peak / 2**20))
