"""Helpers of the cluster suite that tests and fixtures share: the real helm against the control
plane, values layering, waiting, and the times the suite records (printed at the end)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.chart.chartkit import CHART
from tests.cluster.control_plane import say

TIMINGS: dict[str, str] = {}


def record(what: str, seconds: float) -> None:
    """A time the suite measured: printed now and in the summary at the end."""
    TIMINGS[what] = f"{seconds:.1f} s"
    say(f"{what}: {seconds:.1f} s")


class ClusterHelm:
    """The real helm binary against the control plane."""

    def __init__(self, binary: Path, kubeconfig: Path, workdir: Path) -> None:
        self.binary, self.kubeconfig, self.workdir = binary, kubeconfig, workdir
        self._files = 0

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.binary), *args, "--kubeconfig", str(self.kubeconfig)],
                              capture_output=True, text=True, timeout=timeout)

    def values_file(self, values: dict[str, Any]) -> Path:
        self._files += 1
        path = self.workdir / f"values-{self._files}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    def apply(self, verb: str, release: str, namespace: str, values: dict[str, Any], *extra: str,
              wait_seconds: int = 150) -> str:
        """helm install/upgrade --wait; returns its output (the NOTES); fails with helm's error."""
        started = time.monotonic()
        result = self.run(verb, release, str(CHART), "-n", namespace, "-f", str(self.values_file(values)),
                          "--wait", "--timeout", f"{wait_seconds}s", *extra, timeout=wait_seconds + 60)
        assert result.returncode == 0, f"helm {verb} {release} failed:\n{result.stderr}\n{result.stdout[-2000:]}"
        record(f"helm {verb} --wait {release}", time.monotonic() - started)
        return result.stdout


def merged(*parts: dict[str, Any]) -> dict[str, Any]:
    """Values files layered as helm layers them: maps merged key by key, the rest replaced."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            both = isinstance(value, dict) and isinstance(out.get(key), dict)
            out[key] = merged(out[key], value) if both else value
    return out


def pods_of(api: client.ApiClient, namespace: str, selector: str = "") -> list[client.V1Pod]:
    return client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Polls `check` until it returns something true; fails with `what` and the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {json.dumps(value, default=str)[:500]})")
