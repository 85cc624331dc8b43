"""Processes a benchmark starts: Offload's services by their own commands, peers' workers by
theirs, each with a log file, all on 127.0.0.1, all stopped by whoever started them.

The redis-server and the small helpers come from tests/support (the same ones the tests use).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import psutil

from tests.support.processes import RedisServer, free_port, wait_for

__all__ = ["Proc", "RedisServer", "free_port", "wait_for", "REPO", "VENV_BIN", "tree_rss_mib"]

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Proc:
    """One process (and its children) with its output in `log_dir/<name>.log`."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path,
                 *, port: int | None = None, ready_path: str = "/readyz",
                 ready_log: str | None = None) -> None:
        self.name, self.argv, self.env, self.port = name, list(argv), env, port
        self.ready_path, self.ready_log = ready_path, ready_log
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 90) -> "Proc":
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> "Proc":
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        self._log = open(self.log_path, "ab")
        self._log_start = self.log_path.stat().st_size
        self.proc = subprocess.Popen(self.argv, env=env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        return self

    def _check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc and self.proc.returncode}):\n{self.log_tail()}")

    def wait_ready(self, timeout: float = 90) -> "Proc":
        def ready() -> bool:
            self._check_alive()
            if self.ready_log is not None:
                return self.ready_log in self.log_text()[self._log_start:]
            if self.port:
                try:
                    return httpx.get(self.url + self.ready_path, timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False
            return True

        wait_for(ready, timeout, f"{self.name} to be ready", interval=0.1)
        return self

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        def check() -> bool:
            self._check_alive()
            return predicate()

        wait_for(check, timeout, what, interval=0.05)

    def stop(self, timeout: float = 10) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # pool children and work horses too
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()

    def kill(self) -> None:
        """Stop at once (a benchmark round is over; nothing it holds needs a clean end)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.stop(timeout=1)

    def rss_mib(self) -> dict[str, float]:
        """RSS of the process itself and of all its descendants together."""
        return tree_rss_mib(self.pid)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def tree_rss_mib(pid: int) -> dict[str, float]:
    try:
        root = psutil.Process(pid)
        main = root.memory_info().rss
        children = [c.memory_info().rss for c in root.children(recursive=True)]
    except psutil.Error:
        return {"main": 0.0, "children": 0.0, "processes": 0, "total": 0.0}
    mib = 2**20
    return {"main": round(main / mib, 1), "children": round(sum(children) / mib, 1),
            "processes": 1 + len(children), "total": round((main + sum(children)) / mib, 1)}


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started
