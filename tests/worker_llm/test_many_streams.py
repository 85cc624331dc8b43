"""Many streams per LLM worker process (the openai backend on threads, each its own worker
identity), against the streaming simulator (bench/llm_sim.py): real gateway, status and worker
processes, a real Redis.

Each stream takes about 0.1 s to its first token, then 20 ms per token.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from bench.llm_sim import Simulator
from offload_core.jobs import keys
from offload_core.jobs.store import message_app
from offload_core.queue.messages import build_task_message
from tests.support.processes import wait_for
from tests.telemetry.prom import scrape, value

MODEL = "sim-model"


@pytest.fixture
def sim():
    server = Simulator(ttft=0.1, itl=0.02).start()
    yield server
    server.stop()


def llm_env(sim: Simulator, **extra: str) -> dict[str, str]:
    return {"OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": sim.base_url, "OFFLOAD_LLM_MODEL": MODEL,
            "OFFLOAD_RETRY_BACKOFF_BASE_SECONDS": "0.2", **extra}


def submit_all(platform, bodies: list[dict], tenant: str = "alice") -> list[str]:
    def one(body: dict) -> str:
        r = platform.submit_llm(body, tenant=tenant)
        assert r.status_code == 202, r.text
        return r.json()["id"]

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, bodies))


def wait_all(platform, ids: list[str], timeout: float = 90, tenant: str = "alice") -> list[dict]:
    return [platform.wait(job_id, timeout=timeout, tenant=tenant) for job_id in ids]


def body(tokens: int, text: str = "Say something.") -> dict:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": tokens, "temperature": 0}


def test_64_jobs_from_one_worker_process_all_stream_at_once(platform_factory, sim, redis_url):
    platform = platform_factory.start(workers=("llm",), worker_env={"llm": llm_env(sim)})
    ids = submit_all(platform, [body(60)] * 64)  # ~1.3 s each
    jobs = wait_all(platform, ids)

    assert [j["state"] for j in jobs] == ["succeeded"] * 64
    # One job's time, not 64: every one was running before the first one finished.
    assert max(j["started_at"] for j in jobs) < min(j["finished_at"] for j in jobs)
    assert sim.counters.peak == 64
    assert "(threads pool, 64 at once)" in platform.workers["llm"].log_text()
    # One process, each run under a worker identity of its own: host:pid:nonce:slot.
    client = redis.Redis.from_url(redis_url)
    holders = {client.hget(keys.job(job_id), "worker").decode() for job_id in ids}
    assert len(holders) == 64
    assert len({h.rsplit(":", 1)[0] for h in holders}) == 1


def test_a_duplicate_delivery_during_a_run_does_not_start_a_second_run(platform_factory, sim, redis_url):
    platform = platform_factory.start(workers=("llm",), worker_env={"llm": llm_env(sim)})
    [job_id] = submit_all(platform, [body(100)])  # ~2 s
    platform.wait(job_id, states={"running"}, timeout=30)
    message = build_task_message(message_app(), job_id=job_id, job_type="llm", queue="llm.normal", tenant="alice",
                                 delivery_tag="duplicate-1")
    store = redis.Redis.from_url(redis_url)
    store.lpush("llm.normal", message)  # the same job, delivered again while its run streams
    wait_for(lambda: store.llen("llm.normal") == 0, 10, "the duplicate to be taken")
    job = platform.wait(job_id)

    assert job["state"] == "succeeded"
    assert job["attempts"] == 1
    assert int(store.hget(keys.job(job_id), "result_writes")) == 1
    assert sim.counters.requests == 1  # the duplicate opened no second stream
    log = platform.workers["llm"].log_text()
    assert f"job {job_id} not run: leased" in log


def test_a_stream_that_hangs_past_the_hard_limit_is_ended_and_recorded_while_others_go_on(platform_factory, sim):
    env = llm_env(sim, OFFLOAD_LLM_SOFT_TIME_LIMIT_SECONDS="3", OFFLOAD_LLM_HARD_TIME_LIMIT_SECONDS="4",
                  OFFLOAD_LLM_MAX_ATTEMPTS="1")
    platform = platform_factory.start(workers=("llm",), worker_env={"llm": env})
    [hung] = submit_all(platform, [body(50, "HANG until the hard limit")])
    others = submit_all(platform, [body(40)] * 8)  # ~0.9 s each, well inside the limits

    job = platform.wait(hung, timeout=30)
    assert job["state"] == "dead"
    assert job["error"]["type"] == "TimeLimitExceeded"
    assert "hard time limit of 4 s" in job["error"]["message"]
    assert [j["state"] for j in wait_all(platform, others)] == ["succeeded"] * 8
    # The hung stream's connection was shut, not left open until the server gives up.
    wait_for(lambda: sim.counters.in_flight == 0, 10, "the simulator to see the hung stream end")
    # The worker goes on taking jobs.
    [after] = submit_all(platform, [body(5)])
    assert platform.wait(after, timeout=30)["state"] == "succeeded"


def test_the_global_cap_holds_across_three_worker_processes(platform_factory, sim, tmp_path):
    models = tmp_path / "models.yaml"
    models.write_text(f"{MODEL}:\n  base_url: {sim.base_url}\n  max_in_flight: 5\n")
    env = llm_env(sim, OFFLOAD_LLM_MODELS_FILE=str(models))
    platform = platform_factory.start(workers=("llm",), env={"OFFLOAD_LLM_MODELS_FILE": str(models), "OFFLOAD_LLM_MODEL": MODEL},
                                      worker_env={"llm": env})
    for _ in range(2):
        platform_factory.start_worker("llm", platform_factory.env(**env))
    ids = submit_all(platform, [body(15)] * 30)  # ~0.4 s each
    jobs = wait_all(platform, ids, timeout=120)

    assert [j["state"] for j in jobs] == ["succeeded"] * 30
    assert sim.counters.peak == 5, sim.counters.snapshot()  # never above the cap, and it was used whole
    client = redis.Redis.from_url(platform_factory.redis_url)
    assert client.zcard(keys.capacity(f"llm:{MODEL}")) == 0  # every slot given back


def test_cancelling_one_of_64_streams_stops_only_that_one(platform_factory, sim):
    platform = platform_factory.start(workers=("llm",), worker_env={"llm": llm_env(sim)})
    ids = submit_all(platform, [body(150)] * 64)  # ~3 s each
    wait_for(lambda: sim.counters.in_flight == 64, 30, "64 streams in flight")
    victim = ids[17]
    r = httpx.delete(f"{platform.gateway.url}/v1/jobs/{victim}", headers=platform.headers(), timeout=10)
    assert r.status_code == 202, r.text
    cancelled = platform.wait(victim, timeout=30)
    assert cancelled["state"] == "cancelled"
    assert sim.counters.completed == 0  # it stopped mid-stream, while the others still streamed
    jobs = wait_all(platform, [i for i in ids if i != victim])
    assert [j["state"] for j in jobs] == ["succeeded"] * 63
    assert sim.counters.completed == 63 and sim.counters.requests == 64


def test_token_counters_move_by_the_usage_the_server_reported(platform_factory, sim):
    platform = platform_factory.start(workers=("llm",), worker_env={"llm": llm_env(sim)}, metrics_ports=True)
    bodies = [body(7, "one two three"), body(11, "four five"), body(3, "six")]
    ids = submit_all(platform, bodies)
    assert [j["state"] for j in wait_all(platform, ids)] == ["succeeded"] * 3
    bob = submit_all(platform, [body(5, "seven eight nine ten")], tenant="bob")
    platform.wait(bob[0], tenant="bob")

    # The simulator reports prompt tokens = words of the messages, completion = max_tokens.
    usage = httpx.get(f"{platform.status.url}/v1/usage", headers=platform.headers(), timeout=10).json()
    assert usage["totals"] == {MODEL: {"prompt_tokens": 3 + 2 + 1, "completion_tokens": 7 + 11 + 3, "jobs": 3}}
    [today] = usage["days"]
    assert today["model"] == MODEL and today["completion_tokens"] == 21
    bob_usage = httpx.get(f"{platform.status.url}/v1/usage", headers=platform.headers("bob"), timeout=10).json()
    assert bob_usage["totals"] == {MODEL: {"prompt_tokens": 4, "completion_tokens": 5, "jobs": 1}}

    metrics = scrape(platform.metrics_url("worker-llm"))
    tokens = {(tenant, kind): value(metrics, "offload_llm_tokens_total", tenant=tenant, model=MODEL, kind=kind)
              for tenant in ("alice", "bob") for kind in ("prompt", "completion")}
    assert tokens == {("alice", "prompt"): 6, ("alice", "completion"): 21, ("bob", "prompt"): 4,
                      ("bob", "completion"): 5}


def test_unknown_or_disallowed_models_are_refused_at_submit_listing_the_allowed_ones(platform_factory, sim, tmp_path):
    models = tmp_path / "models.yaml"
    models.write_text(f"{MODEL}: {{base_url: '{sim.base_url}'}}\n"
                      f"private-model: {{base_url: '{sim.base_url}', served_model: big-one, tenants: [bob]}}\n")
    platform = platform_factory.start(workers=(), env={"OFFLOAD_LLM_MODEL": MODEL,
                                                       "OFFLOAD_LLM_MODELS_FILE": str(models)})
    r = platform.submit_llm({**body(5), "model": "gpt-4o"})
    assert r.status_code == 422
    problem = r.json()
    assert problem["allowed_models"] == [MODEL]
    assert "'gpt-4o' is not served here" in problem["detail"] and MODEL in problem["detail"]
    r = platform.submit_llm({**body(5), "model": "private-model"})
    assert r.status_code == 422 and "not allowed for your tenant" in r.json()["detail"]
    assert platform.submit_llm({**body(5), "model": "private-model"}, tenant="bob").status_code == 202
    assert platform.submit_llm(body(5)).status_code == 202  # no model: the default one


def test_an_ocr_language_no_worker_has_is_refused_at_submit(platform_factory, redis_url):
    from tests.support.documents import small_png

    platform_factory.start(workers=("ocr",), api=False)
    client = redis.Redis.from_url(redis_url)
    wait_for(lambda: client.zscore(keys.OCR_LANGUAGES, "eng") is not None, 30, "the OCR worker's languages")
    platform = platform_factory.start(workers=())
    png = small_png()
    r = platform.submit_ocr(png, fields={"languages": "eng+xyz"})
    assert r.status_code == 422
    assert r.json()["installed_languages"] == ["eng"]
    assert "no OCR worker has xyz" in r.json()["detail"]
    assert platform.submit_ocr(png, fields={"languages": "eng"}).status_code == 202


def test_the_tokens_per_minute_limit_refuses_at_submit_with_retry_after(platform_factory):
    platform = platform_factory.start(workers=(), env={"OFFLOAD_LLM_TOKENS_PER_MINUTE": "100"})
    job = {"prompt": "x" * 40, "max_tokens": 60}  # 60 + 40 / 4 = 70 tokens
    assert platform.submit_llm(job).status_code == 202
    r = platform.submit_llm(job)
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 61
    assert "more than 100 tokens" in r.json()["detail"]
    assert platform.submit_llm(job, tenant="bob").status_code == 202  # per tenant
    r = platform.submit_llm({"prompt": "x", "max_tokens": 101})
    assert r.status_code == 422 and "lower max_tokens" in r.json()["detail"]  # never fits: not a 429


def test_openai_parameters_are_validated_at_submit(platform_factory, tmp_path):
    models = tmp_path / "models.yaml"
    models.write_text(f"{MODEL}: {{}}\nno-schema: {{json_schema: false}}\n")
    platform = platform_factory.start(workers=(), env={"OFFLOAD_LLM_MODEL": MODEL,
                                                       "OFFLOAD_LLM_MODELS_FILE": str(models)})
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    assert platform.submit_llm({**body(5), "response_format": schema, "stop": ["END"], "seed": 7}).status_code == 202
    r = platform.submit_llm({**body(5), "model": "no-schema", "response_format": schema})
    assert r.status_code == 422 and "use json_object" in r.json()["detail"]
    for bad in ({"top_p": 0}, {"stop": ["a", "b", "c", "d", "e"]}, {"presence_penalty": 3},
                {"response_format": {"type": "json_schema"}}, {"response_format": {"type": "xml"}}):
        assert platform.submit_llm({**body(5), **bad}).status_code == 422, bad


def test_warm_shutdown_drains_every_stream_in_flight(platform_factory, sim):
    import signal

    platform = platform_factory.start(workers=("llm",), worker_env={"llm": llm_env(sim)})
    ids = submit_all(platform, [body(100)] * 16)  # ~2 s each
    wait_for(lambda: sim.counters.in_flight == 16, 30, "16 streams in flight")
    worker = platform.workers["llm"]
    worker.signal(signal.SIGTERM)  # what the kubelet sends at scale-in
    assert worker.proc.wait(60) == 0
    jobs = [platform.job(job_id) for job_id in ids]
    assert [j["state"] for j in jobs] == ["succeeded"] * 16
    assert [j["attempts"] for j in jobs] == [1] * 16
    assert sim.counters.completed == 16
