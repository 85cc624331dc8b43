"""The diagnostic probe job end to end: admin tenants only (by default), run by any worker,
sleeping with progress and honouring cancel, failing on demand (permanently, or retryably
until dead, or only on its first attempts)."""

from __future__ import annotations

import httpx

ADMIN = "ops"


def test_probe_jobs_are_for_admin_tenants_and_bounded(apis):
    refused = apis.submit_probe({"sleep_seconds": 0}, tenant="alice")
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert "admin" in refused.json()["detail"]
    too_long = apis.submit_probe({"sleep_seconds": 10_000})
    assert too_long.status_code == 422 and "at most" in too_long.json()["detail"]
    unknown = apis.submit_probe({"sleep_seconds": 0, "explode": True})
    assert unknown.status_code == 422
    accepted = apis.submit_probe({"sleep_seconds": 0}, **{"Idempotency-Key": "probe-1"})
    assert accepted.status_code == 202 and accepted.json()["type"] == "probe"
    assert accepted.headers["location"].endswith(f"/v1/jobs/{accepted.json()['id']}")


def test_any_worker_runs_probes_with_progress_and_outcomes_on_demand(platform_factory):
    platform = platform_factory.start(workers=("llm",), env={"OFFLOAD_PROBE_MAX_ATTEMPTS": "2"})
    ok = platform.submit_probe({"sleep_seconds": 0.6, "steps": 3}).json()["id"]
    permanent = platform.submit_probe({"fail": "permanent"}).json()["id"]
    retryable = platform.submit_probe({"fail": "retryable"}).json()["id"]
    transient = platform.submit_probe({"fail_attempts": 1}).json()["id"]

    done = platform.wait(ok, tenant=ADMIN)
    assert done["state"] == "succeeded" and done["progress"] == {"current": 3, "total": 3, "message": "probing"}
    assert platform.result(ok, tenant=ADMIN)["slept_seconds"] >= 0.6
    failed = platform.wait(permanent, tenant=ADMIN)
    assert failed["state"] == "failed" and failed["error"]["type"] == "ProbeFailure"
    dead = platform.wait(retryable, tenant=ADMIN, timeout=60)
    assert dead["state"] == "dead" and dead["attempts"] == 2
    assert platform.wait(transient, tenant=ADMIN, timeout=60)["attempts"] == 2


def test_a_sleeping_probe_stops_at_its_next_checkpoint_when_cancelled(platform):
    job_id = platform.submit_probe({"sleep_seconds": 60}).json()["id"]
    platform.wait(job_id, states={"running"}, tenant=ADMIN)
    r = httpx.delete(f"{platform.gateway.url}/v1/jobs/{job_id}", headers=platform.headers(ADMIN))
    assert r.status_code == 202
    # The run learns of the cancel from its next lease heartbeat (every lease_seconds / 3).
    assert platform.wait(job_id, tenant=ADMIN, timeout=30)["state"] == "cancelled"
