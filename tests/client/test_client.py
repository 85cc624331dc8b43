"""The sync client against the real platform: submit, wait, events, cancel, retry, listings,
queues and the errors it raises."""

from __future__ import annotations

import uuid

import pytest

from offload_client import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    JobState,
    NotFoundError,
    OffloadClient,
    StateEvent,
    TokenEvent,
)
from tests.client.conftest import SHORT
from tests.support.platform import Platform

LONG = {"prompt": "Write a long story about a lighthouse keeper.", "max_tokens": 400, "temperature": 0}


def test_submit_then_wait_returns_the_succeeded_job_and_its_result(client: OffloadClient):
    job = client.submit_llm(**SHORT)
    assert job.state is JobState.QUEUED and job.type == "llm"
    # A key was generated for the submission, so a retried request cannot make a second job.
    assert uuid.UUID(job.idempotency_key)

    done = client.wait(job.id, timeout=120)

    assert done.id == job.id and done.state is JobState.SUCCEEDED and done.attempts == 1
    result = client.result(job.id)
    assert isinstance(result["text"], str) and result["usage"]["completion_tokens"] <= SHORT["max_tokens"]


def test_wait_reports_every_event_in_order_and_the_tokens_make_the_result(client: OffloadClient):
    job = client.submit_llm(prompt="Name three colours.", max_tokens=24, temperature=0)
    seen = []
    client.wait(job.id, timeout=120, on_event=seen.append)

    states = [(e.state, e.attempt) for e in seen if isinstance(e, StateEvent)]
    assert states == [(JobState.QUEUED, None), (JobState.RUNNING, 1), (JobState.SUCCEEDED, None)]
    assert seen[0].kind == "state" and seen[-1].kind == "state"
    ids = [tuple(map(int, e.id.split("-"))) for e in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    tokens = "".join(e.text for e in seen if isinstance(e, TokenEvent))
    assert tokens and tokens == client.result(job.id)["text"]


def test_the_same_idempotency_key_returns_the_first_job(client: OffloadClient):
    key = f"order-{uuid.uuid4()}"
    first = client.submit_llm(**SHORT, idempotency_key=key)
    again = client.submit_llm(**SHORT, idempotency_key=key)
    other = client.submit_llm(**SHORT)
    assert again.id == first.id and other.id != first.id
    with pytest.raises(ConflictError) as conflict:
        client.submit_llm(prompt="A different request", max_tokens=4, idempotency_key=key)
    assert conflict.value.status == 409 and conflict.value.extra["job_id"] == first.id


def test_cancel_a_running_job_ends_it_cancelled(client: OffloadClient):
    job = client.submit_llm(**LONG)
    for event in client.events(job.id):
        if isinstance(event, TokenEvent):
            break  # it is running and generating
    cancelled = client.cancel(job.id)
    assert cancelled.cancel_requested or cancelled.state is JobState.CANCELLED
    final = client.wait(job.id, timeout=120)
    assert final.state is JobState.CANCELLED
    with pytest.raises(ConflictError) as again:
        client.cancel(job.id)
    assert "cancelled" in again.value.detail


def test_retry_requeues_a_failed_job(platform: Platform):
    # A probe job (admin keys) told to fail for good: accepted at submit, failed by the worker.
    # (An unknown model no longer does: it is refused at submit.)
    job_id = platform.http_post("/v1/jobs/probe", tenant="ops", json={"fail": "permanent"}).json()["id"]
    with OffloadClient(platform.gateway.url, status_url=platform.status.url, api_key=platform.keys["ops"]) as client:
        failed = client.wait(job_id, timeout=120)
        assert failed.state is JobState.FAILED and not failed.error.retryable
        assert "asked to fail" in failed.error.message

        requeued = client.retry(job_id)

        assert requeued.state is JobState.QUEUED and requeued.id == job_id
        events = list(client.events(job_id))
        requeue_events = [e for e in events if isinstance(e, StateEvent) and e.requeued]
        assert len(requeue_events) == 1
        after = [e.state for e in events[events.index(requeue_events[0]):] if isinstance(e, StateEvent)]
        assert after == [JobState.QUEUED, JobState.RUNNING, JobState.FAILED]
        with pytest.raises(ConflictError):
            client.result(job_id)


def test_listing_filters_by_state_and_type_and_pages_with_a_cursor(client: OffloadClient):
    ids = [client.submit_llm(**SHORT).id for _ in range(3)]
    for job_id in ids:
        client.wait(job_id, timeout=120)
    first = client.list_jobs(type="llm", state="succeeded", limit=2)
    assert len(first.jobs) == 2 and first.next_cursor
    assert all(j.state is JobState.SUCCEEDED for j in first.jobs)
    walked = [j.id for j in client.iter_jobs(type="llm", state="succeeded", page_size=2)]
    assert set(ids) <= set(walked) and len(walked) == len(set(walked))
    assert client.list_jobs(type="ocr", state="succeeded").jobs == []


def test_queues_report_depth_and_the_replicas_keda_should_want(client: OffloadClient):
    stats = client.queues()
    assert set(stats.queues) == {f"{t}.{p}" for t in ("ocr", "llm", "embed", "probe") for p in ("high", "normal", "low")}
    assert set(stats.workers) == {"ocr", "llm"}
    assert all(w.desired_replicas >= 0 for w in stats.workers.values())


def test_a_bad_key_raises_authentication_error_with_the_problem_fields(platform):
    with OffloadClient(platform.gateway.url, status_url=platform.status.url, api_key="not-a-key") as bad:
        with pytest.raises(AuthenticationError) as refused:
            bad.submit_llm(**SHORT)
        with pytest.raises(AuthenticationError):
            bad.queues()
    problem = refused.value
    assert problem.status == 401 and problem.title == "Unauthorized" and "not valid" in problem.detail
    assert problem.instance == "/v1/jobs/llm"


def test_another_tenants_job_is_not_found_and_invalid_input_is_explained(client: OffloadClient, platform):
    job = client.submit_llm(**SHORT)
    with OffloadClient(platform.gateway.url, status_url=platform.status.url, api_key=platform.keys["bob"]) as bob:
        with pytest.raises(NotFoundError):
            bob.get_job(job.id)
        with pytest.raises(NotFoundError):
            list(bob.events(job.id))
    with pytest.raises(InvalidRequestError) as invalid:
        client.submit_llm(prompt="Hi", max_tokens=10**6)
    assert invalid.value.status == 422 and "max_tokens" in invalid.value.detail
    client.wait(job.id, timeout=120)
