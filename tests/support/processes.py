"""Real processes for tests: a redis-server on a free port, and Offload services started with
the same commands their containers run."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

REPO = Path(__file__).resolve().parents[2]

# Databases on the session's Redis: each long-lived platform has its own, so the workers of one
# never take the jobs of another.
TEST_DB, SHARED_PLATFORM_DB, API_ONLY_DB = 0, 1, 2
VENV_BIN = Path(sys.executable).parent


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the test process dies (no orphans)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """A redis-server this test owns: it can be killed (-9) and restarted from its AOF."""

    def __init__(self, *, appendfsync: str = "everysec", appendonly: bool = True, password: str = "") -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; `make test-deps` installs it")
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="offload-redis-"))
        self.appendfsync = appendfsync
        self.appendonly = appendonly
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.db_url(0)

    def db_url(self, db: int) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def start(self) -> "RedisServer":
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", self.appendfsync, "--daemonize", "no", "--logfile", str(self.dir / "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.RedisError:
                return False

        wait_for(up, 10, "redis-server to answer")
        client.close()
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.db_url(db))

    def flush(self, db: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.start()  # a test killed it
        client = self.client(db)
        client.flushdb()
        client.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Service:
    """An Offload service started with its real console command (as its container does)."""

    def __init__(self, command: str, env: dict[str, str], log_dir: Path, *, port: int | None = None,
                 ready_path: str = "/readyz") -> None:
        self.command, self.env, self.port, self.ready_path = command, env, port, ready_path
        self.log_path = log_dir / f"{command}-{port or free_port()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "Service":
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> "Service":
        full_env = {**os.environ, **self.env}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(VENV_BIN / self.command)], env=full_env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        return self

    def wait_ready(self, timeout: float = 60) -> "Service":
        if self.port:
            def ready() -> bool:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.command} exited ({self.proc.returncode}):\n{self.log_tail()}")
                try:
                    return httpx.get(self.url + self.ready_path, timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(ready, timeout, f"{self.command} on port {self.port}", interval=0.1)
        return self

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig) if sig == signal.SIGKILL else self.proc.send_signal(sig)

    def terminate(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # stray pool children
            except ProcessLookupError:
                pass
        if getattr(self, "_log", None):
            self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")
