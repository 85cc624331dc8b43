"""Celery's own tools against a real platform, run as an operator runs them: `celery -A
offload_core inspect ping|active|stats|active_queues` (remote control, on by default),
`celery -A offload_core events --dump` (task events, OFFLOAD_CELERY_EVENTS), and Flower from
PyPI, whose API and pages show the workers and their tasks. With OFFLOAD_FLOWER_SCREENSHOT=DIR
the Flower pages are saved there (docs/operations.md shows them)."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from tests.support.platform import Platform, PlatformFactory
from tests.support.processes import VENV_BIN, free_port, wait_for

pytestmark = pytest.mark.slow
ADMIN = "ops"


@pytest.fixture(scope="module")
def platform(redis_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    redis_server.flush(5)
    factory = PlatformFactory(redis_url=redis_server.db_url(5), log_dir=tmp_path_factory.mktemp("platform"))
    try:
        yield factory.start(workers=("ocr", "llm"), env={"OFFLOAD_CELERY_EVENTS": "true",
                                                        "OFFLOAD_WORKER_HEARTBEAT_SECONDS": "1"})
    finally:
        factory.stop_all()


def celery(platform: Platform, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OFFLOAD_REDIS_URL": platform.status.env["OFFLOAD_REDIS_URL"]}
    return subprocess.run([str(VENV_BIN / "celery"), "-A", "offload_core", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def inspect(platform: Platform, command: str) -> dict:
    done = celery(platform, "inspect", command, "--json", "--timeout", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def registered(platform: Platform) -> dict[str, dict]:
    body = httpx.get(f"{platform.status.url}/v1/workers", headers=platform.headers(ADMIN), timeout=10).json()
    return {w["id"]: w for w in body["workers"] if w["state"] == "live"}


def test_celery_inspect_answers_from_every_live_worker(platform: Platform):
    wait_for(lambda: len(registered(platform)) == 2, 60, "both workers to register")
    nodes = registered(platform)
    assert set(inspect(platform, "ping")) == set(nodes)  # the registry's ids are Celery's node names
    assert all(reply == {"ok": "pong"} for reply in inspect(platform, "ping").values())

    queues = inspect(platform, "active_queues")
    for node, entry in nodes.items():
        assert [q["name"] for q in queues[node]] == entry["queues"]

    stats = inspect(platform, "stats")
    for node, entry in nodes.items():
        assert stats[node]["pid"] == entry["pid"]
        assert stats[node]["pool"]["max-concurrency"] == entry["concurrency"]

    job = platform.submit_probe({"sleep_seconds": 20}, tenant=ADMIN).json()["id"]
    wait_for(lambda: any(job in w["current_jobs"] for w in registered(platform).values()), 30,
             "the probe to run")
    [runner] = [node for node, w in registered(platform).items() if job in w["current_jobs"]]
    active = inspect(platform, "active")
    running = [(node, task) for node, tasks in active.items() for task in tasks]
    assert len(running) == 1
    node, task = running[0]
    assert node == runner  # the registry and Celery agree on who runs it
    assert task["id"] == job and task["name"] == "offload.probe.run" and task["args"][0] == job
    platform.wait(job, tenant=ADMIN)


def test_celery_events_show_each_task_with_the_jobs_outcome(platform: Platform):
    env = {**os.environ, "OFFLOAD_REDIS_URL": platform.status.env["OFFLOAD_REDIS_URL"], "PYTHONUNBUFFERED": "1"}
    dump = subprocess.Popen([str(VENV_BIN / "celery"), "-A", "offload_core", "events", "--dump"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(dump.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        # Events are published, not queued: submit only once the dump hears the workers'
        # heartbeats (a fixed sleep was too short on a loaded machine).
        wait_for(lambda: any("heartbeat" in line for line in lines), 60, "celery events to hear a worker heartbeat")
        ok = platform.submit_probe({"sleep_seconds": 0}, tenant=ADMIN).json()["id"]
        failing = platform.submit_probe({"fail": "permanent"}, tenant=ADMIN).json()["id"]
        for job in (ok, failing):
            platform.wait(job, tenant=ADMIN)
        wait_for(lambda: all(any(job in line and "task succeeded" in line for line in lines) for job in (ok, failing)),
                 30, "both tasks' succeeded events")
    finally:
        os.killpg(dump.pid, signal.SIGINT)
        dump.wait(20)
        reader.join(10)
    out = "".join(lines)
    for job in (ok, failing):
        kinds = [line for line in lines if job in line]
        assert any("task received" in line for line in kinds), out[-3000:]
        assert any("task started" in line for line in kinds), out[-3000:]
        assert any("task succeeded" in line for line in kinds), out[-3000:]
    # To Celery every delivery succeeds; the result says what became of the job.
    assert any(failing in line and "failed (ProbeFailure)" in line for line in lines), out[-3000:]


def test_remote_control_can_be_turned_off(platform_factory: PlatformFactory):
    platform = platform_factory.start(workers=("ocr",), env={"OFFLOAD_CELERY_REMOTE_CONTROL": "false"})
    wait_for(lambda: len(registered(platform)) == 1, 60, "the worker to register")
    done = celery(platform, "inspect", "ping", "--timeout", "2")
    assert done.returncode != 0 and "No nodes replied" in done.stdout + done.stderr


def test_flower_shows_the_workers_and_their_tasks(platform: Platform, browser: Browser, tmp_path: Path):
    port = free_port()
    env = {**os.environ, "OFFLOAD_REDIS_URL": platform.status.env["OFFLOAD_REDIS_URL"],
           "FLOWER_UNAUTHENTICATED_API": "true"}
    log = (tmp_path / "flower.log").open("wb")
    flower = subprocess.Popen([str(VENV_BIN / "celery"), "-A", "offload_core", "flower", f"--port={port}",
                               "--address=127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthcheck", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "Flower to answer")
        time.sleep(2)  # Flower listens for events from here on
        jobs = [platform.submit_probe({"sleep_seconds": 0.5}, tenant=ADMIN).json()["id"] for _ in range(3)]
        jobs.append(platform.submit_llm({"prompt": "Name a colour.", "max_tokens": 8, "temperature": 0}).json()["id"])
        for job in jobs[:3]:
            platform.wait(job, tenant=ADMIN)
        platform.wait(jobs[3])
        nodes = registered(platform)

        def workers_online() -> bool:
            listed = httpx.get(f"{base}/api/workers", params={"refresh": "1"}, timeout=30).json()
            return set(nodes) <= set(listed)

        wait_for(workers_online, 60, "Flower to list the workers")
        wait_for(lambda: set(jobs) <= set(httpx.get(f"{base}/api/tasks", timeout=10).json()), 30,
                 "Flower to list the tasks")
        tasks = httpx.get(f"{base}/api/tasks", timeout=10).json()
        for job in jobs:
            assert tasks[job]["state"] == "SUCCESS" and tasks[job]["worker"] in nodes
            assert ast.literal_eval(tasks[job]["result"]) == "succeeded"

        page = browser.new_page(viewport={"width": 1280, "height": 720})
        try:
            page.goto(f"{base}/workers")
            for node in nodes:
                page.get_by_text(node, exact=True).first.wait_for(timeout=30_000)
            shots = {"flower-workers.png": page.screenshot(full_page=True)}
            page.goto(f"{base}/tasks")
            page.get_by_text(jobs[0]).first.wait_for(timeout=30_000)
            shots["flower-tasks.png"] = page.screenshot(full_page=True)
        finally:
            page.close()
        if target := os.environ.get("OFFLOAD_FLOWER_SCREENSHOT"):  # docs/operations.md's pictures
            for name, data in shots.items():
                (Path(target) / name).write_bytes(data)
    finally:
        os.killpg(flower.pid, signal.SIGTERM)
        flower.wait(20)
        log.close()
