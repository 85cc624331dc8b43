"""The bundled Redis has a memory bound below its container limit: derived from the limit (with
headroom for the AOF rewrite's fork), and at the bound a real redis-server, started from the
rendered StatefulSet and redis.conf, refuses writes and keeps serving reads instead of growing
until the kernel kills it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis

from tests.chart.chartkit import RELEASE, Helm
from tests.chart.local_pod import PodResolver, expand
from tests.support.processes import free_port, wait_for


def _maxmemory(helm: Helm, values: dict) -> str:
    conf = helm.template(values).get("ConfigMap", f"{RELEASE}-offload-redis")["data"]["redis.conf"]
    (line,) = [x for x in conf.splitlines() if x.startswith("maxmemory ")]
    return line.split()[1]


@pytest.mark.parametrize(("limit", "percent", "expected"), [
    ("1Gi", None, str(1024**3 * 60 // 100)),  # the defaults: 60 % of 1 GiB
    ("512Mi", 50, str(256 * 1024**2)),
    ("2G", 75, "1500000000"),
    ("1536Mi", 60, str(1536 * 1024**2 * 60 // 100)),
])
def test_maxmemory_is_a_share_of_the_memory_limit(helm: Helm, limit: str, percent: int | None, expected: str) -> None:
    redis_values: dict = {"resources": {"limits": {"memory": limit}}}
    if percent:
        redis_values["maxmemoryPercent"] = percent
    assert _maxmemory(helm, {"redis": redis_values}) == expected


def test_an_explicit_maxmemory_wins_and_no_bound_at_all_is_refused(helm: Helm) -> None:
    assert _maxmemory(helm, {"redis": {"maxmemory": "300mb"}}) == "300mb"
    error = helm.template_error({"redis": {"resources": {"limits": {"memory": None}}}})
    assert "redis: set redis.resources.limits.memory (maxmemory is derived from it) or redis.maxmemory" in error


def test_the_rendered_redis_refuses_writes_at_its_bound_and_keeps_serving_reads(helm: Helm, tmp_path: Path) -> None:
    rendered = helm.template({"redis": {"resources": {"limits": {"memory": "40Mi"}}, "maxmemoryPercent": 50}})
    sts = rendered.get("StatefulSet", f"{RELEASE}-offload-redis")
    pod = sts["spec"]["template"]["spec"]
    claims = tuple(c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"])
    container = PodResolver(rendered).resolve(f"{RELEASE}-offload-redis-0", pod, pod["containers"][0], claims)
    home = tmp_path / "redis"
    env = {"PATH": "/usr/bin:/bin", **container.materialize(home)}

    argv = [container.local_path(expand(a, env), home) for a in container.argv]
    port = free_port()
    data = Path(container.local_path(container.working_dir, home))
    data.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([*argv, "--port", str(port), "--bind", "127.0.0.1"], cwd=data, env=env,
                            stdout=(tmp_path / "redis.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(port=port, password=env["REDIS_PASSWORD"])
        wait_for(lambda: proc.poll() is not None or _pings(client), 20, "the rendered redis")
        assert proc.poll() is None, (tmp_path / "redis.log").read_text()
        assert int(client.config_get("maxmemory")["maxmemory"]) == 20 * 1024**2
        client.set("first", "kept")
        chunk = b"x" * 64 * 1024
        with pytest.raises(redis.exceptions.OutOfMemoryError, match="maxmemory"):
            for i in range(10_000):  # 640 MB if nothing stopped it
                client.rpush("ocr.normal", chunk)
        assert client.info("memory")["used_memory"] < 24 * 1024**2
        assert client.get("first") == b"kept" and client.llen("ocr.normal") > 100, "nothing was evicted"
        client.delete("ocr.normal")
        client.rpush("ocr.normal", chunk)  # room again once the backlog drains
    finally:
        proc.terminate()
        proc.wait(20)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False
