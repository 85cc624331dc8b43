"""The job contract through real processes: idempotency, cancel, retry to dead and requeue,
tenant isolation, problem+json errors, and Redis outages."""

from __future__ import annotations

import signal

import httpx
import psutil
import pytest

from tests.support.processes import SHARED_PLATFORM_DB

SHORT = {"prompt": "Hi", "max_tokens": 2, "temperature": 0}
LONG = {"prompt": "Write a long story about a lighthouse keeper.", "max_tokens": 150, "temperature": 0}


def assert_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_same_idempotency_key_returns_the_first_job_and_other_body_conflicts(apis):
    first = apis.submit_llm(SHORT, **{"Idempotency-Key": "order-42"})
    again = apis.submit_llm(SHORT, **{"Idempotency-Key": "order-42"})
    other = apis.submit_llm({**SHORT, "max_tokens": 3}, **{"Idempotency-Key": "order-42"})
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert_problem(other, 409)
    listed = httpx.get(f"{apis.status.url}/v1/jobs", headers=apis.headers()).json()["jobs"]
    assert [j["id"] for j in listed] == [first.json()["id"]]
    # The key is per tenant: bob's identical request is his own new job.
    bobs = apis.submit_llm(SHORT, tenant="bob", **{"Idempotency-Key": "order-42"})
    assert bobs.status_code == 202 and bobs.json()["id"] != first.json()["id"]


def test_idempotency_key_is_documented_and_a_malformed_one_is_refused_on_both_submit_routes(apis):
    schema = httpx.get(f"{apis.gateway.url}/openapi.json").json()
    for route in ("/v1/jobs/llm", "/v1/jobs/ocr"):
        header = [p for p in schema["paths"][route]["post"].get("parameters", []) if p["in"] == "header"]
        assert [(p["name"], p["schema"]["maxLength"]) for p in header] == [("Idempotency-Key", 255)], route
    for bad in ("x" * 256, "a\tb"):
        body = assert_problem(apis.submit_llm(SHORT, **{"Idempotency-Key": bad}), 400)
        assert body["title"] == "Invalid Idempotency-Key"
        body = assert_problem(apis.submit_ocr(b"not read", **{"Idempotency-Key": bad}), 400)
        assert body["title"] == "Invalid Idempotency-Key"
    assert httpx.get(f"{apis.status.url}/v1/jobs", headers=apis.headers()).json()["jobs"] == []


def test_cancel_a_queued_job_at_once_and_a_finished_one_is_409(apis):
    job_id = apis.submit_llm(SHORT).json()["id"]
    r = httpx.delete(f"{apis.gateway.url}/v1/jobs/{job_id}", headers=apis.headers())
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert_problem(httpx.delete(f"{apis.gateway.url}/v1/jobs/{job_id}", headers=apis.headers()), 409)


def test_other_tenants_cannot_see_cancel_or_retry_a_job(apis):
    job_id = apis.submit_llm(SHORT).json()["id"]
    h = apis.headers("bob")
    assert_problem(httpx.get(f"{apis.status.url}/v1/jobs/{job_id}", headers=h), 404)
    assert_problem(httpx.get(f"{apis.status.url}/v1/jobs/{job_id}/result", headers=h), 404)
    assert_problem(httpx.get(f"{apis.status.url}/v1/jobs/{job_id}/events", headers=h), 404)
    assert_problem(httpx.delete(f"{apis.gateway.url}/v1/jobs/{job_id}", headers=h), 404)
    assert_problem(httpx.post(f"{apis.gateway.url}/v1/jobs/{job_id}/retry", headers=h), 404)
    assert httpx.get(f"{apis.status.url}/v1/jobs", headers=h).json()["jobs"] == []
    assert apis.job(job_id)["state"] == "queued"


@pytest.mark.parametrize("auth", [None, "Bearer wrong-key-000000000000", "Basic abc", "Bearer"])
def test_every_job_endpoint_requires_a_valid_key(apis, auth):
    headers = {"Authorization": auth} if auth else {}
    some_id = "0b7c1f4e-0000-4000-8000-000000000000"
    for method, url in [("POST", f"{apis.gateway.url}/v1/jobs/llm"), ("DELETE", f"{apis.gateway.url}/v1/jobs/{some_id}"),
                        ("POST", f"{apis.gateway.url}/v1/jobs/{some_id}/retry"), ("POST", f"{apis.gateway.url}/v1/jobs/ocr"),
                        ("GET", f"{apis.status.url}/v1/jobs/{some_id}"), ("GET", f"{apis.status.url}/v1/jobs"),
                        ("GET", f"{apis.status.url}/v1/queues"), ("GET", f"{apis.status.url}/v1/jobs/{some_id}/events")]:
        body = assert_problem(httpx.request(method, url, headers=headers, json=SHORT), 401)
        assert "key" in body["detail"].lower() or "authorization" in body["detail"].lower()


def test_the_api_key_is_documented_as_a_bearer_scheme_on_every_job_endpoint(apis):
    for service in (apis.gateway, apis.status):
        schema = httpx.get(f"{service.url}/openapi.json").json()
        assert schema["components"]["securitySchemes"]["apiKey"] == {
            "type": "http", "scheme": "bearer", "bearerFormat": "API key",
            "description": "`Authorization: Bearer <API key>`; each key belongs to one tenant"}
        for path, methods in schema["paths"].items():
            for method, operation in methods.items():
                named = {p["name"].lower() for p in operation.get("parameters", [])}
                assert "authorization" not in named, (path, method)  # the scheme says it, once
                if path.startswith("/v1/"):
                    assert operation.get("security") == [{"apiKey": []}], (path, method)


@pytest.mark.parametrize(("body", "field"), [
    ({"max_tokens": 5}, "prompt"),
    ({"prompt": "x", "messages": [{"role": "user", "content": "y"}]}, "exactly one"),
    ({"prompt": "x", "max_tokens": -1}, "max_tokens"),
    ({"prompt": "x", "temperature": 9}, "temperature"),
    ({"prompt": "x", "priority": "urgent"}, "priority"),
    ({"prompt": "x", "surprise": 1}, "surprise"),
    ({"prompt": "x", "callback_url": "http://169.254.169.254/latest/meta-data"}, "link-local"),
    ({"prompt": "x", "callback_url": "http://localhost:8000/hook"}, "internal"),
])
def test_invalid_llm_requests_get_problem_details_naming_the_field(apis, body, field):
    problem = assert_problem(apis.submit_llm(body), 422)
    assert field in problem["detail"].lower()


@pytest.mark.parametrize(("content", "content_type", "status", "words"), [
    (b'{"prompt":', "application/json", 400, "not valid json: expecting value at character 10"),
    (b"prompt=hi", "application/json", 400, "not valid json"),
    (b'{"prompt": "hi"}', "text/plain", 415, "application/json (got text/plain)"),
    (b'{"prompt": "hi"}', "", 415, "application/json"),
    (b'["prompt", "hi"]', "application/json", 422, "valid dictionary"),
    ('{"prompt": "café"}'.encode("latin-1"), "application/json", 400, "not valid utf-8"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested too deeply"),
])
def test_a_body_that_is_not_a_json_object_says_why(apis, content, content_type, status, words):
    headers = apis.headers() | ({"Content-Type": content_type} if content_type else {})
    r = httpx.post(f"{apis.gateway.url}/v1/jobs/llm", content=content, headers=headers)
    problem = assert_problem(r, status)
    assert words in problem["detail"].lower(), problem


def test_unknown_job_and_malformed_id_are_404_problems(apis):
    assert_problem(httpx.get(f"{apis.status.url}/v1/jobs/not-a-uuid", headers=apis.headers()), 404)
    assert_problem(httpx.get(f"{apis.status.url}/v1/jobs/0b7c1f4e-0000-4000-8000-000000000000",
                             headers=apis.headers()), 404)


def test_unknown_routes_and_wrong_methods_are_problems_that_name_the_fix(apis):
    for base in (apis.gateway.url, apis.status.url):
        missing = assert_problem(httpx.get(f"{base}/v1/nothing-here", headers=apis.headers()), 404)
        assert "/docs" in missing["detail"], missing
    wrong = httpx.get(f"{apis.gateway.url}/v1/jobs/llm", headers=apis.headers())
    assert "GET is not allowed" in assert_problem(wrong, 405)["detail"]
    assert wrong.headers["allow"] == "POST"
    wrong = httpx.post(f"{apis.status.url}/v1/queues", headers=apis.headers())
    assert "POST is not allowed" in assert_problem(wrong, 405)["detail"]
    assert wrong.headers["allow"] == "GET"


def test_rate_limit_gives_429_with_retry_after(platform_factory):
    apis = platform_factory.start(workers=(), env={"OFFLOAD_RATE_LIMIT_PER_MINUTE": "3"})
    codes = [apis.submit_llm(SHORT).status_code for _ in range(3)]
    limited = apis.submit_llm(SHORT)
    assert codes == [202, 202, 202]
    assert_problem(limited, 429)
    assert 1 <= int(limited.headers["retry-after"]) <= 61
    assert apis.submit_llm(SHORT, tenant="bob").status_code == 202  # per tenant


def test_queued_job_quota_gives_429(platform_factory):
    apis = platform_factory.start(workers=(), env={"OFFLOAD_MAX_QUEUED_PER_TENANT": "2"})
    first = apis.submit_llm(SHORT).json()["id"]
    apis.submit_llm(SHORT)
    assert_problem(apis.submit_llm(SHORT), 429)
    httpx.delete(f"{apis.gateway.url}/v1/jobs/{first}", headers=apis.headers())
    assert apis.submit_llm(SHORT).status_code == 202  # a finished job frees its slot


def test_redis_down_gives_503_with_retry_after_and_recovers(apis, redis_server):
    redis_server.kill()
    try:
        for r in (apis.submit_llm(SHORT),
                  httpx.get(f"{apis.status.url}/v1/jobs", headers=apis.headers(), timeout=10),
                  httpx.get(f"{apis.gateway.url}/readyz", timeout=10)):
            assert_problem(r, 503)
            assert int(r.headers["retry-after"]) > 0
    finally:
        redis_server.start()
    assert apis.submit_llm(SHORT).status_code == 202  # recovers by itself


def test_retryable_failures_back_off_to_dead_and_requeue_runs_again(platform_factory):
    # An OpenAI-compatible server that is not there: every attempt fails with a retryable error.
    from tests.support.processes import free_port

    platform = platform_factory.start(workers=("llm",), env={"OFFLOAD_LLM_MAX_ATTEMPTS": "3"}, worker_env={"llm": {
        "OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "OFFLOAD_LLM_MAX_HTTP_ATTEMPTS": "1"}})
    job_id = platform.submit_llm(SHORT).json()["id"]
    dead = platform.wait(job_id, timeout=60)
    assert dead["state"] == "dead" and dead["attempts"] == 3
    assert dead["error"]["retryable"] is True
    states = [d["state"] for _, k, d in platform.events(job_id) if k == "state"]
    # Each retry waits in the delayed set; the mover queues it when its backoff ends.
    assert states == ["queued", "running", "retrying", "queued", "running", "retrying", "queued", "running", "dead"]
    queues = httpx.get(f"{platform.status.url}/v1/queues", headers=platform.headers()).json()
    assert queues["dead"] == 1
    dead_listing = httpx.get(f"{platform.status.url}/v1/dead-letters", headers=platform.headers()).json()
    assert [j["id"] for j in dead_listing["jobs"]] == [job_id]

    r = httpx.post(f"{platform.gateway.url}/v1/jobs/{job_id}/retry", headers=platform.headers())
    assert r.status_code == 202 and r.json()["state"] == "queued" and r.json()["attempts"] == 0
    again = platform.wait(job_id, timeout=60)
    assert again["state"] == "dead" and again["attempts"] == 3
    # Only failed or dead jobs can be requeued.
    other = platform.submit_llm(SHORT).json()["id"]
    httpx.delete(f"{platform.gateway.url}/v1/jobs/{other}", headers=platform.headers())
    assert_problem(httpx.post(f"{platform.gateway.url}/v1/jobs/{other}/retry", headers=platform.headers()), 409)


def test_cancel_a_running_job_stops_it_at_the_next_checkpoint(platform):
    job_id = platform.submit_llm(LONG).json()["id"]
    platform.wait(job_id, states={"running"})
    r = httpx.delete(f"{platform.gateway.url}/v1/jobs/{job_id}", headers=platform.headers())
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    job = platform.wait(job_id, timeout=30)
    assert job["state"] == "cancelled"
    assert_problem(httpx.get(f"{platform.status.url}/v1/jobs/{job_id}/result", headers=platform.headers()), 409)


def test_worker_process_killed_mid_job_is_redelivered_and_recorded_once(platform, redis_server):
    job_id = platform.submit_llm(LONG).json()["id"]
    platform.wait(job_id, states={"running"})
    parent = psutil.Process(platform.workers["llm"].proc.pid)
    children = parent.children(recursive=True)
    assert children, "a prefork worker runs jobs in a child process"
    for child in children:
        child.send_signal(signal.SIGKILL)
    job = platform.wait(job_id, timeout=120)
    assert job["state"] == "succeeded"
    assert job["attempts"] == 2
    assert int(redis_server.client(SHARED_PLATFORM_DB).hget(f"offload:job:{job_id}", "result_writes")) == 1
    states = [d["state"] for _, k, d in platform.events(job_id) if k == "state"]
    assert states == ["queued", "running", "running", "succeeded"]
