"""A worker's liveness (/healthz) follows its consumer loop, not the HTTP thread that answers it.

The hang here is a real one, made without touching the worker's code: its stdout is a pipe that
stops being read (a stuck log collector; container runtimes block a container whose log driver
cannot keep up). The main process then blocks in its next log write, inside the consumer loop,
while the health port's thread goes on answering. Before, /healthz said 200 for as long as the
process lived; now it says 503 once the loop has made no progress for
OFFLOAD_WORKER_LIVENESS_SECONDS, and 200 again once the loop moves.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import threading

import httpx

from offload_core.queue.celery_app import make_control_app
from offload_core.settings import Settings

from tests.support.platform import PlatformFactory
from tests.support.processes import VENV_BIN, free_port, wait_for

F_SETPIPE_SZ = 1031  # Linux: the smallest pipe buffer is one page


class StallablePipe:
    """Reads a process's output until told to stop; then the pipe fills and its writers block."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc, self.lines = proc, []
        self.reading = threading.Event()
        self.reading.set()
        fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, 4096)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            self.reading.wait()
            line = self.proc.stdout.readline()
            if not line:
                return
            self.lines.append(line.decode(errors="replace"))


def healthz(port: int) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_healthz_fails_while_the_consumer_loop_is_stuck_and_recovers_when_it_moves(platform_factory: PlatformFactory):
    apis = platform_factory.start(workers=())
    port = free_port()
    env = {**os.environ, **platform_factory.env(
        OFFLOAD_WORKER_HTTP_PORT=str(port), OFFLOAD_WORKER_LIVENESS_SECONDS="3",
        OFFLOAD_WORKER_HEARTBEAT_SECONDS="0.5", OFFLOAD_WORKER_LOST_AFTER_SECONDS="2",
        # The main process logs what its loop does (remote-control commands among it).
        OFFLOAD_LOG_LEVEL="DEBUG")}
    proc = subprocess.Popen([str(VENV_BIN / "offload-worker-ocr")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    pipe = StallablePipe(proc)
    try:
        wait_for(lambda: any(" ready." in line for line in pipe.lines), 60, "the worker to start")
        wait_for(lambda: healthz(port).status_code == 200, 10, "/healthz to answer")
        assert healthz(port).json()["detail"] == "the consumer loop is running"

        pipe.reading.clear()  # nobody reads the worker's log any more
        for _ in range(20):  # the job processes' lines fill the pipe; they block first
            assert apis.submit_probe({"sleep_seconds": 0}).status_code == 202
        control = make_control_app(Settings(redis_url=env["OFFLOAD_REDIS_URL"]))

        def stuck() -> bool:
            # A remote-control ping is handled, and logged (DEBUG), by the main process's loop:
            # once the pipe is full, that write blocks the loop.
            control.control.ping(timeout=0.2)
            return healthz(port).status_code == 503

        wait_for(stuck, 60, "/healthz to report the stuck loop", interval=0.2)
        assert control.control.ping(timeout=1) == []  # the loop answers nothing any more
        stuck = healthz(port)
        assert stuck.headers["content-type"] == "application/problem+json"
        assert "the consumer loop has made no progress" in stuck.json()["detail"]
        assert "while Redis answers" in stuck.json()["detail"]
        assert proc.poll() is None  # alive all along: only the loop was stuck

        pipe.reading.set()  # the log is read again: the loop moves, and liveness says so
        wait_for(lambda: healthz(port).status_code == 200, 60, "/healthz to recover")
    finally:
        pipe.reading.set()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_a_loop_waiting_for_redis_is_not_reported_dead(platform_factory: PlatformFactory, redis_server):
    """Redis gone: the consumer waits to reconnect, which a restart would not cure (readiness
    says it is not ready); liveness stays 200 and says why."""
    port = free_port()
    worker = platform_factory.start_worker("ocr", platform_factory.env(
        OFFLOAD_WORKER_HTTP_PORT=str(port), OFFLOAD_WORKER_LIVENESS_SECONDS="2"))
    wait_for(lambda: healthz(port).status_code == 200, 30, "/healthz to answer")
    redis_server.stop()
    try:
        wait_for(lambda: "for Redis" in healthz(port).json().get("detail", ""), 60,
                 "/healthz to say the loop waits for Redis")
        assert healthz(port).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 503
        assert worker.proc.poll() is None
    finally:
        redis_server.start()
    wait_for(lambda: healthz(port).json()["detail"] == "the consumer loop is running", 60, "the loop to run again")
