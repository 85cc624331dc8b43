"""Guarantee: an OCR upload is held at most once in the gateway's memory, its spool on disk is
bounded (a clear 503 + Retry-After beyond it, never a 500 from a full disk), and no spool file
outlives its request, whatever the request's end: accepted, refused or abandoned."""

from __future__ import annotations

import io
import os
import socket
import threading
import time

import httpx
import psutil
import pytest
from PIL import Image

from tests.support import documents as docs
from tests.support.platform import PlatformFactory

MiB = 1024 * 1024
UPLOADS = 6


@pytest.fixture(scope="module")
def big_png() -> bytes:
    """A 19 MiB PNG that is a real document: random pixels, stored without compression."""
    image = Image.frombytes("RGB", (2580, 2580), os.urandom(2580 * 2580 * 3))
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc, self.peak, self.halt = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.02):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                pass


def _concurrently(platform, data: bytes, n: int) -> list[httpx.Response]:
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(platform.submit_ocr(data, "big.png")))
               for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def _spool_files(spool) -> list[str]:
    return sorted(p.name for p in spool.iterdir())


@pytest.mark.slow
def test_six_concurrent_19_mib_uploads_are_held_once_and_leave_no_spool_file(
        platform_factory: PlatformFactory, big_png, tmp_path, figures):
    spool = tmp_path / "spool"
    spool.mkdir()
    platform = platform_factory.start(workers=(), env={"OFFLOAD_UPLOAD_SPOOL_DIR": str(spool)})
    platform.submit_ocr(docs.small_png(), "warm.png")  # the first request imports and allocates
    base = psutil.Process(platform.gateway.proc.pid).memory_info().rss
    peak = PeakRss(platform.gateway.proc.pid)
    peak.start()
    answers = _concurrently(platform, big_png, UPLOADS)
    peak.halt.set()
    peak.join(5)
    assert [r.status_code for r in answers] == [202] * UPLOADS, [r.text[:200] for r in answers]
    assert all(r.json()["params"]["bytes"] == len(big_png) for r in answers)
    assert _spool_files(spool) == []
    grew = peak.peak - base
    # The job record holds each payload inline, so one copy per upload is the floor with the
    # Redis store; a second copy anywhere on the path would exceed this.
    assert grew < 1.5 * UPLOADS * len(big_png), f"gateway RSS grew {grew / MiB:.0f} MiB"
    figures.record("upload-spool", uploads=UPLOADS, upload_mib=round(len(big_png) / MiB, 1),
                   gateway_rss_base_mib=round(base / MiB), gateway_rss_peak_mib=round(peak.peak / MiB),
                   gateway_rss_growth_mib=round(grew / MiB))


def _abandoned_upload(url: str, key: str, sent: int) -> None:
    """Start a multipart upload of a large PNG, send `sent` bytes of it, and hang up."""
    host, port = url.removeprefix("http://").split(":")
    head = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall((f"POST /v1/jobs/ocr HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                      f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {20 * MiB}\r\n\r\n").encode())
        sock.sendall(head + b"\x89PNG" + b"\0" * sent)
        time.sleep(0.5)


@pytest.mark.slow
def test_the_spool_budget_gives_a_clear_503_and_every_ending_removes_its_file(
        platform_factory: PlatformFactory, big_png, tmp_path, figures):
    spool = tmp_path / "spool"
    spool.mkdir()
    budget = 45 * MiB  # room for two uploads of 19 MiB at once
    platform = platform_factory.start(workers=(), env={
        "OFFLOAD_UPLOAD_SPOOL_DIR": str(spool), "OFFLOAD_UPLOAD_SPOOL_MAX_DISK_BYTES": str(budget),
        "OFFLOAD_OCR_MAX_UPLOAD_BYTES": str(20 * MiB)})

    answers = _concurrently(platform, big_png, UPLOADS)
    codes = sorted(r.status_code for r in answers)
    assert set(codes) <= {202, 503} and 202 in codes and 503 in codes, codes
    for refused in (r for r in answers if r.status_code == 503):
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.headers["retry-after"] == "5"
        assert "more uploads than it has room" in refused.json()["detail"]
    assert _spool_files(spool) == []
    assert platform.submit_ocr(big_png, "again.png").status_code == 202  # the budget was given back

    # Every other way a request can end leaves nothing behind either.
    oversized = platform.submit_ocr(b"%PDF-1.7\n" + b"0" * (20 * MiB + 1), "big.pdf")
    assert oversized.status_code == 413
    hostile = platform.submit_ocr(docs.bomb_png() + b"\0" * (2 * MiB), "bomb.png")
    assert hostile.status_code == 422
    _abandoned_upload(platform.gateway.url, platform.keys["alice"], sent=3 * MiB)
    deadline = time.monotonic() + 10
    while _spool_files(spool) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _spool_files(spool) == []
    assert platform.gateway.proc.poll() is None
    figures.record("upload-spool-budget", budget_mib=budget // MiB, concurrent=UPLOADS,
                   accepted=codes.count(202), refused_503=codes.count(503))


@pytest.mark.parametrize(("body", "status", "words"), [
    # two files
    (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nAAAA\r\n'
     b'--b\r\nContent-Disposition: form-data; name="file"; filename="b.png"\r\n\r\nBBBB\r\n--b--\r\n',
     400, "more than one file"),
    # a file where text belongs
    (b'--b\r\nContent-Disposition: form-data; name="languages"; filename="l.txt"\r\n\r\neng\r\n--b--\r\n',
     422, "must be text, not a file"),
    # a part without a name
    (b'--b\r\nContent-Disposition: form-data; filename="a.png"\r\n\r\nAAAA\r\n--b--\r\n', 400, '"name"'),
    # the body ends inside the file
    (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n\x89PNG\r\n\x1a\n',
     400, "ended before the closing boundary"),
    # no file at all
    (b'--b\r\nContent-Disposition: form-data; name="languages"\r\n\r\neng\r\n--b--\r\n', 422, "field 'file'"),
    # a text field over 16 KiB
    (b'--b\r\nContent-Disposition: form-data; name="languages"\r\n\r\n' + b"e" * 17_000 + b"\r\n--b--\r\n",
     400, "larger than 16 KiB"),
], ids=["two-files", "file-as-text-field", "nameless-part", "truncated", "no-file", "huge-field"])
def test_malformed_forms_get_a_problem_that_says_what_to_fix(apis, body, status, words):
    r = httpx.post(f"{apis.gateway.url}/v1/jobs/ocr", content=body, timeout=30,
                   headers=apis.headers(**{"Content-Type": "multipart/form-data; boundary=b"}))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert words in r.json()["detail"]
