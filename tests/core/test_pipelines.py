"""Pipelines in a real Redis: created whole, each step queued by the end of the step before it in
the same script, failures parked and retried, cancels carried to the steps after, counts true.

The worker side is the real WorkerJobStore (claim, finish), as a worker process uses it; the
platform suite runs whole pipelines through real workers (tests/e2e/test_pipelines.py)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis

from offload_core.jobs import keys
from offload_core.jobs.store import JobStore, connect
from offload_core.jobs.worker_store import WorkerJobStore, connect_sync
from offload_core.maintenance.reconcile import Reconciler
from offload_core.maintenance.waiting import WaitingSweep
from offload_core.pipelines.spec import PipelineRequest
from offload_core.pipelines.store import NewPipeline, OcrInput, PipelineStore
from offload_core.settings import Settings
from offload_core.types import JobState, JobType

WORKER = "host:1:w"
STEPS = {"steps": [{"type": "ocr"},
                   {"type": "llm", "name": "extract", "per_page": True, "prompt": "Fields of: {text}"},
                   {"type": "llm", "name": "reduce", "prompt": "Combine: {results}"}]}


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(env="dev", redis_url=redis_url, retention_seconds=3600)


@pytest.fixture
def r(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


def run(settings: Settings, call):
    async def go():
        store = JobStore(connect(settings), settings)
        try:
            return await call(PipelineStore(store), store)
        finally:
            await store.redis.aclose()
    return asyncio.run(go())


def create(settings: Settings, pages: int = 3, steps: dict = STEPS, key: str | None = None, tenant: str = "t1"):
    new = NewPipeline(tenant=tenant, request=PipelineRequest.model_validate(steps), pages=pages,
                      document=OcrInput(b"%PDF-1.7 document", {"pages": pages}, payload_sha256="ab"),
                      llm_params=[{"model": "m", "max_tokens": 16, "temperature": 0.0}] * (len(steps["steps"]) - 1),
                      idempotency_key=key)
    outcome = run(settings, lambda p, _: p.create(new))
    return outcome


def view(settings: Settings, pipeline_id: str):
    return run(settings, lambda p, _: p.get(pipeline_id, "t1", with_result=True))


def step_ids(settings: Settings, pipeline_id: str) -> list[list[str]]:
    return [s["jobs"] for s in view(settings, pipeline_id).steps]


def state(r: redis.Redis, job_id: str) -> str:
    return r.hget(keys.job(job_id), "state").decode()


def work(settings: Settings, job_id: str, job_type: JobType, outcome: JobState = JobState.SUCCEEDED,
         result: dict | None = None) -> None:
    """What a worker does with a job: claim it, then record its end."""
    worker = WorkerJobStore(connect_sync(settings), settings)
    claim = worker.claim(job_id, WORKER, job_type)
    assert claim.status == "claimed", claim
    ok = outcome is JobState.SUCCEEDED
    assert worker.finish(claim.job, WORKER, outcome, result=(result or {"text": job_id}) if ok else None,
                         error=None if ok else {"type": "Boom", "message": "it broke", "retryable": False})


def queued_ids(r: redis.Redis, queue: str) -> list[str]:
    return [json.loads(m)["headers"]["id"] for m in r.lrange(queue, 0, -1)]


def test_every_job_exists_from_the_start_and_only_the_first_step_is_queued(settings, r):
    outcome = create(settings, pages=3)
    assert outcome.status == "created" and outcome.jobs == 5
    ocr, pages, (reduce,) = step_ids(settings, outcome.pipeline_id)
    assert queued_ids(r, "ocr.normal") == ocr and r.llen("llm.normal") == 0
    assert [state(r, j) for j in pages + [reduce]] == ["waiting"] * 4
    assert int(r.hget(keys.tenant_usage("t1"), "active")) == 5  # every job counts in the quota
    assert r.zscore(keys.WAITING, reduce) == float("inf")
    assert view(settings, outcome.pipeline_id).state == "queued"


def test_a_step_ending_queues_the_next_in_the_same_script_and_the_last_ends_the_pipeline(settings, r):
    pid = create(settings, pages=3).pipeline_id
    (ocr,), pages, (reduce,) = step_ids(settings, pid)
    work(settings, ocr, JobType.OCR, result={"pages": [{"page": n, "text": f"p{n}"} for n in (1, 2, 3)], "text": ""})
    # All three pages were queued by the OCR job's finish, with the messages made at submit.
    assert sorted(queued_ids(r, "llm.normal")) == sorted(pages)
    assert [state(r, j) for j in pages] == ["queued"] * 3 and state(r, reduce) == "waiting"
    assert view(settings, pid).state == "running"
    work(settings, pages[0], JobType.LLM)
    work(settings, pages[2], JobType.LLM)
    assert state(r, reduce) == "waiting"  # one page still to go
    work(settings, pages[1], JobType.LLM)
    assert state(r, reduce) == "queued" and reduce in queued_ids(r, "llm.normal")
    work(settings, reduce, JobType.LLM, result={"text": "combined"})
    done = view(settings, pid)
    assert done.state == "succeeded" and done.to_api()["result"] == {"text": "combined"}
    api = done.to_api()
    assert api["progress"] == {"steps_done": 3, "steps": 3, "jobs_done": 5, "jobs": 5, "pages_done": 3, "pages": 3}
    events = run(settings, lambda p, _: p.events(pid))
    assert events[-1][1] == "end" and json.loads(events[-1][2])["state"] == "succeeded"
    moves = [json.loads(d) for _, kind, d in events if kind == "state"]
    assert [m["state"] for m in moves if m["job"] == reduce] == ["queued", "running", "succeeded"]
    assert int(r.hget(keys.tenant_usage("t1"), "active")) == 0
    assert 0 < r.ttl(keys.pipeline(pid)) <= 3600  # it expires once no job of it is open


def test_a_failed_step_parks_the_steps_after_it_and_a_retry_runs_only_what_failed(settings, r):
    pid = create(settings, pages=2).pipeline_id
    (ocr,), pages, (reduce,) = step_ids(settings, pid)
    work(settings, ocr, JobType.OCR, result={"pages": [{"page": 1, "text": "a"}, {"page": 2, "text": "b"}]})
    work(settings, pages[0], JobType.LLM)
    work(settings, pages[1], JobType.LLM, outcome=JobState.FAILED)
    # Parked: still waiting (a retry may release it), to be cancelled after the retention period.
    assert state(r, reduce) == "waiting"
    assert time.time() < r.zscore(keys.WAITING, reduce) <= time.time() + 3600
    assert view(settings, pid).state == "failed"
    assert run(settings, lambda p, _: p.events(pid))[-1][1] == "blocked"

    status, after = run(settings, lambda p, _: p.retry(pid, "t1"))
    assert status == "requeued" and after.state == "running"  # some steps are done, the failed one is queued
    assert r.zscore(keys.WAITING, reduce) == float("inf")
    assert pages[1] in queued_ids(r, "llm.normal")
    attempts_before = {j: int(r.hget(keys.job(j), "attempts")) for j in (ocr, pages[0])}
    work(settings, pages[1], JobType.LLM)
    work(settings, reduce, JobType.LLM)
    assert view(settings, pid).state == "succeeded"
    # The steps that had succeeded did not run again.
    assert {j: int(r.hget(keys.job(j), "attempts")) for j in (ocr, pages[0])} == attempts_before


def test_cancel_ends_what_waits_and_stops_what_runs_at_its_checkpoint(settings, r):
    pid = create(settings, pages=2).pipeline_id
    (ocr,), pages, (reduce,) = step_ids(settings, pid)
    worker = WorkerJobStore(connect_sync(settings), settings)
    claim = worker.claim(ocr, WORKER, JobType.OCR)
    after = run(settings, lambda p, _: p.cancel(pid, "t1"))
    assert after.state == "cancelling"
    assert [state(r, j) for j in pages + [reduce]] == ["cancelled"] * 3
    assert r.hget(keys.job(ocr), "cancel_requested") == b"1"
    worker.finish(claim.job, WORKER, JobState.CANCELLED)  # the run stops at its next checkpoint
    assert view(settings, pid).state == "cancelled"
    assert r.llen("llm.normal") == 0 and r.zcard(keys.WAITING) == 0
    assert int(r.hget(keys.tenant_usage("t1"), "active")) == 0


def test_a_step_cancelled_alone_has_the_steps_after_it_cancelled_by_the_sweep(settings, r):
    pid = create(settings, pages=2).pipeline_id
    (ocr,), pages, (reduce,) = step_ids(settings, pid)
    work(settings, ocr, JobType.OCR, result={"pages": [{"page": 1, "text": "a"}, {"page": 2, "text": "b"}]})
    run(settings, lambda _, store: store.cancel(pages[0], "t1"))
    assert r.zscore(keys.WAITING, reduce) <= time.time()  # due at once
    cancelled = run(settings, lambda _, store: WaitingSweep(store.redis, settings).cancel_due())
    assert cancelled == 1 and state(r, reduce) == "cancelled"
    work(settings, pages[1], JobType.LLM)
    assert view(settings, pid).state == "cancelled"
    assert json.loads(run(settings, lambda p, _: p.events(pid))[-1][2])["state"] == "cancelled"


def test_a_failure_nobody_retries_is_cancelled_after_the_retention_period(settings, r):
    pid = create(settings, pages=1).pipeline_id
    (ocr,), (page,), (reduce,) = step_ids(settings, pid)
    work(settings, ocr, JobType.OCR, outcome=JobState.FAILED)
    sweep = lambda at: run(settings, lambda _, store: WaitingSweep(store.redis, settings).cancel_due(now=at))  # noqa: E731
    assert sweep(time.time()) == 0  # parked, not due yet
    assert sweep(time.time() + 3601) == 1 and state(r, page) == "cancelled"  # the page; the reduce next
    assert sweep(time.time() + 3601) == 1 and state(r, reduce) == "cancelled"
    assert view(settings, pid).state == "failed"
    assert int(r.hget(keys.tenant_usage("t1"), "active")) == 0


def test_reconciliation_counts_waiting_steps_as_unfinished(settings, r):
    create(settings, pages=3)
    report = run(settings, lambda _, store: Reconciler(store.redis, settings, tenants=lambda: ["t1"]).run_once())
    assert report.unfinished == 5 and report.drift == {}


def test_the_quota_counts_every_job_and_a_refusal_writes_nothing(settings, r):
    settings = settings.model_copy(update={"max_queued_per_tenant": 4})
    outcome = create(settings, pages=3)
    assert outcome.status == "quota_exceeded"
    assert r.llen("ocr.normal") == 0 and not r.keys(keys.job("*")) and not r.keys(keys.pipeline("*"))
    assert int(r.hget(keys.tenant_usage("t1"), "active")) == 0


def test_an_idempotency_key_gives_back_the_same_pipeline(settings, r):
    first = create(settings, pages=1, key="k1")
    again = create(settings, pages=1, key="k1")
    assert again.status == "existing" and again.pipeline_id == first.pipeline_id
    other = dict(STEPS, priority="high")
    assert create(settings, pages=1, key="k1", steps=other).status == "conflict"


def test_per_page_steps_in_a_row_go_page_by_page(settings, r):
    steps = {"steps": [{"type": "ocr"}, {"type": "llm", "per_page": True, "prompt": "A {text}"},
                       {"type": "llm", "per_page": True, "prompt": "B {text}"}]}
    pid = create(settings, pages=2, steps=steps).pipeline_id
    (ocr,), first, second = step_ids(settings, pid)
    work(settings, ocr, JobType.OCR, result={"pages": [{"page": 1, "text": "a"}, {"page": 2, "text": "b"}]})
    work(settings, first[1], JobType.LLM)
    # Page 2 goes on without waiting for page 1.
    assert state(r, second[1]) == "queued" and state(r, second[0]) == "waiting"
    job = run(settings, lambda _, store: store.get(second[1], "t1"))
    assert job.params["inputs"] == [first[1]] and job.params["page"] == 2
