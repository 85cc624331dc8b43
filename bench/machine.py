"""What the figures were measured on: versions, CPU, memory, and the load other work put on it."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import threading
import time
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tool_version(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(peer_versions: dict[str, str] | None = None) -> dict[str, Any]:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    packages = {d: _version(d) for d in (
        "offload-core", "celery", "kombu", "redis", "fastapi", "starlette", "uvicorn", "uvloop", "httptools",
        "pydantic", "tesserocr", "pytesseract", "llama-cpp-python", "opentelemetry-sdk")}
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {k: v for k, v in packages.items() if v},
        "peers": peer_versions or {},
        "tools": {k: v for k, v in {
            "redis-server": _tool_version(["redis-server", "--version"]),
            "wrk": _tool_version(["wrk", "--version"]),
            "tesseract": _tool_version(["tesseract", "--version"]),
        }.items() if v},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class LoadSampler:
    """The 1-minute load average, sampled while a section runs (other work on the machine)."""

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> "LoadSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figure(self) -> dict[str, float]:
        values = self.samples or [os.getloadavg()[0]]
        return {"min": round(min(values), 2), "max": round(max(values), 2),
                "mean": round(sum(values) / len(values), 2)}
