"""Guarantee: no request costs the gateway more than its limits allow, whoever sends it and however
slowly. A body over its route's limit is refused before it is read (413, before authentication);
headers and bodies that do not arrive in time are answered 408 and their connections closed;
past the connection cap everyone gets 503 + Retry-After, never a hang. Ordinary clients keep
being answered meanwhile.
"""

from __future__ import annotations

import json
import select
import selectors
import socket
import threading
import time

import httpx
import psutil
import pytest

from tests.support.platform import Platform

HEADER_TIMEOUT = 3.0
BODY_TIMEOUT = 2.0
MIB = 1024 * 1024


def _address(platform: Platform) -> tuple[str, int]:
    return "127.0.0.1", platform.gateway.port


def _read_answer(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP answer (or whatever came before the server closed): status, headers, body."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else 0, headers, body


class Firehose(threading.Thread):
    """Sends the body of a request as fast as the socket takes it, until the server answers (a
    client that reads while it sends, as curl does) or closes the connection."""

    def __init__(self, sock: socket.socket, total: int, *, chunked: bool) -> None:
        super().__init__(daemon=True)
        self.sock, self.total, self.chunked, self.sent = sock, total, chunked, 0

    def run(self) -> None:
        piece = b"x" * (256 * 1024)
        frame = b"%x\r\n%s\r\n" % (len(piece), piece) if self.chunked else piece
        try:
            while self.sent < self.total and not select.select([self.sock], [], [], 0)[0]:
                self.sock.sendall(frame)
                self.sent += len(piece)
        except OSError:
            pass  # the server closed the connection: what it answered is in our receive buffer


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process, self.peak, self.halt = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)


def _huge_unauthenticated_post(platform: Platform, *, chunked: bool) -> dict:
    """POST 300 MiB to /v1/jobs/llm with no API key; the answer, its delay, and the gateway's RSS."""
    process = psutil.Process(platform.gateway.proc.pid)
    before = process.memory_info().rss
    peak = PeakRss(process.pid)
    peak.start()
    total = 300 * MIB
    sock = socket.create_connection(_address(platform), timeout=10)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    started = time.monotonic()
    sock.sendall((f"POST /v1/jobs/llm HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                  f"{framing}\r\n\r\n").encode())
    hose = Firehose(sock, total, chunked=chunked)
    hose.start()
    status, headers, body = _read_answer(sock)
    answered_after = time.monotonic() - started
    sock.close()
    hose.join(10)
    time.sleep(0.3)  # a last look at the memory after the connection has gone
    peak.halt.set()
    peak.join(5)
    return {"status": status, "headers": headers, "body": body, "seconds": answered_after,
            "rss_growth_mib": (peak.peak - before) / MIB, "sent_mib": hose.sent / MIB}


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_unauthenticated_300_mib_body_is_refused_at_once_without_being_read(apis, figures, chunked):
    out = _huge_unauthenticated_post(apis, chunked=chunked)
    assert out["status"] == 413, out
    assert out["headers"]["content-type"].startswith("application/problem+json")
    problem = json.loads(out["body"])
    assert problem["status"] == 413 and "at most 1048576 bytes" in problem["detail"], problem
    assert out["seconds"] < 1.0, out  # before authentication, parsing or reading the body
    assert out["rss_growth_mib"] < 20, out
    figures.record(f"13-oversized-body-{'chunked' if chunked else 'content-length'}",
                   answered_ms=round(out["seconds"] * 1000, 1), gateway_rss_growth_mib=round(out["rss_growth_mib"], 1),
                   client_sent_mib_before_close=round(out["sent_mib"], 1))
    # The gateway goes on answering.
    assert httpx.get(f"{apis.gateway.url}/readyz", timeout=5).status_code == 200


@pytest.mark.slow
def test_an_authenticated_body_over_the_json_limit_is_a_413_that_names_the_limit(apis):
    big = {"prompt": "x" * (MIB + 10)}
    r = httpx.post(f"{apis.gateway.url}/v1/jobs/llm", json=big, headers=apis.headers(), timeout=30)
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
    assert "1 MiB" in r.json()["detail"]
    # Under the limit, the request gets as far as validation (the prompt is too long for the model).
    r = httpx.post(f"{apis.gateway.url}/v1/jobs/llm", json={"prompt": "x" * (MIB // 2)}, headers=apis.headers(),
                   timeout=30)
    assert r.status_code == 422, r.text


class SlowClients(threading.Thread):
    """`count` connections that each send a request's first line, then one header byte a second."""

    def __init__(self, address: tuple[str, int], count: int) -> None:
        super().__init__(daemon=True)
        self.address, self.count = address, count
        self.opened: dict[int, float] = {}
        self.closed: dict[int, float] = {}
        self.answers: dict[int, bytes] = {}
        self.ready = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        socks = []
        for i in range(self.count):
            sock = socket.create_connection(self.address, timeout=10)
            sock.sendall(b"POST /v1/jobs/llm HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
            sock.setblocking(False)
            self.opened[i] = time.monotonic()
            selector.register(sock, selectors.EVENT_READ, i)
            socks.append(sock)
        self.ready.set()
        next_byte = time.monotonic() + 1
        while len(self.closed) < self.count and not self.halt.is_set():
            for key, _ in selector.select(timeout=0.05):
                i = key.data
                try:
                    data = key.fileobj.recv(65536)
                except OSError:
                    data = b""
                if data:
                    self.answers[i] = self.answers.get(i, b"") + data
                    continue
                self.closed[i] = time.monotonic()
                selector.unregister(key.fileobj)
                key.fileobj.close()
            if time.monotonic() >= next_byte:
                next_byte += 1
                for i, sock in enumerate(socks):
                    if i not in self.closed:
                        try:
                            sock.send(b"a")
                        except OSError:
                            pass
        for i, sock in enumerate(socks):
            if i not in self.closed:
                sock.close()


@pytest.mark.slow
def test_slowloris_connections_are_cut_at_the_header_timeout_and_others_are_still_served(platform_factory, figures):
    platform = platform_factory.start(workers=(), env={
        "OFFLOAD_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)})
    slow = SlowClients(_address(platform), 300)
    slow.start()
    assert slow.ready.wait(30)
    # While all 300 dribble their headers, an ordinary client is answered.
    normal = []
    for _ in range(5):
        started = time.monotonic()
        r = platform.submit_llm({"prompt": "Say hi", "max_tokens": 4})
        normal.append(time.monotonic() - started)
        assert r.status_code == 202, r.text
        assert httpx.get(f"{platform.gateway.url}/readyz", timeout=5).status_code == 200
        time.sleep(0.2)
    slow.join(HEADER_TIMEOUT + 15)
    slow.halt.set()
    assert len(slow.closed) == 300, f"{300 - len(slow.closed)} slow connections still open"
    held = [slow.closed[i] - slow.opened[i] for i in range(300)]
    assert max(held) < HEADER_TIMEOUT + 1.5, max(held)
    assert min(held) >= HEADER_TIMEOUT - 0.1, min(held)  # none cut before its time
    answered = [a for a in slow.answers.values() if a.startswith(b"HTTP/1.1 408")]
    assert len(answered) == 300 and b"application/problem+json" in answered[0] and b"did not arrive" in answered[0]
    figures.record("14-slowloris", connections=300, header_timeout_s=HEADER_TIMEOUT,
                   closed_after_s_max=round(max(held), 2), closed_after_s_min=round(min(held), 2),
                   normal_submit_ms_max=round(max(normal) * 1000, 1))


@pytest.mark.slow
def test_a_body_that_does_not_arrive_in_time_gets_408_and_headers_too_large_get_431(platform_factory):
    platform = platform_factory.start(workers=(), env={"OFFLOAD_HTTP_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT)})
    sock = socket.create_connection(_address(platform), timeout=10)
    sock.sendall(f"POST /v1/jobs/llm HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {platform.keys['alice']}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"prompt\": ".encode())
    started = time.monotonic()
    status, headers, body = _read_answer(sock, timeout=BODY_TIMEOUT + 10)
    waited = time.monotonic() - started
    assert status == 408 and headers["content-type"] == "application/problem+json", (status, body)
    assert "body did not arrive" in json.loads(body)["detail"]
    assert BODY_TIMEOUT - 0.1 <= waited < BODY_TIMEOUT + 2
    assert sock.recv(10) == b""  # and the connection is closed
    sock.close()

    sock = socket.create_connection(_address(platform), timeout=10)
    sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: g\r\n" + b"X-Padding: " + b"p" * (70 * 1024) + b"\r\n\r\n")
    status, headers, body = _read_answer(sock)
    assert status == 431 and json.loads(body)["status"] == 431
    sock.close()


@pytest.mark.slow
def test_past_the_connection_cap_requests_get_503_with_retry_after_until_connections_go(platform_factory, figures):
    cap = 40
    platform = platform_factory.start(workers=(), env={
        "OFFLOAD_HTTP_MAX_CONNECTIONS": str(cap), "OFFLOAD_SSE_MAX_STREAMS": "10",
        "OFFLOAD_SSE_MAX_STREAMS_PER_TENANT": "10",
        "OFFLOAD_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)})
    idle = [socket.create_connection(_address(platform), timeout=10) for _ in range(cap + 5)]
    time.sleep(0.3)
    r = httpx.get(f"{platform.gateway.url}/readyz", timeout=5)
    assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
    assert r.headers["content-type"] == "application/problem+json" and f"limit of {cap}" in r.json()["detail"]
    # Connections that send nothing are closed at the header timeout; then there is room again.
    deadline = time.monotonic() + HEADER_TIMEOUT + 10
    while httpx.get(f"{platform.gateway.url}/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the gateway stayed at its connection cap"
        time.sleep(0.2)
    for sock in idle:
        sock.close()
    figures.record("15-connection-cap", cap=cap, idle_connections=cap + 5, answer_past_cap="503 + Retry-After: 1")
