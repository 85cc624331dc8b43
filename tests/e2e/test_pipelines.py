"""A 20-page scanned PDF through a document pipeline: OCR, a per-page extraction, a reduce.

Real gateway, status and worker processes on a real Redis; the OCR worker runs Tesseract; the
LLM steps go to the streaming OpenAI-compatible simulator (bench/llm_sim.py) on the openai
backend, so every prompt a step sent can be read back. Every service exports its spans to a
real OTLP receiver: the pipeline is one trace.
"""

from __future__ import annotations

import io
import signal
import time
from collections.abc import Iterator

import pytest
import redis

from bench.llm_sim import Simulator
from offload_core.jobs import keys
from tests.support.documents import page_image
from tests.support.processes import wait_for
from tests.telemetry.conftest import otel_env
from tests.telemetry.otlp_receiver import OtlpReceiver, render_tree

PAGES = 20
EXTRACT = "Write the first words of this page.\n{text}"
REDUCE = "FAIL-ONCE Combine these notes, one line per page.\n{results}"
STEPS = {"steps": [{"type": "ocr"},
                   {"type": "llm", "name": "extract", "per_page": True, "prompt": EXTRACT, "max_tokens": 30},
                   {"type": "llm", "name": "combine", "prompt": REDUCE, "max_tokens": 8}]}
# Short leases: a killed worker's runs are taken over within seconds, not half a minute.
ENV = {"OFFLOAD_LEASE_SECONDS": "3", "OFFLOAD_LEASE_REAPER_SECONDS": "1"}


@pytest.fixture(scope="module")
def scanned_pdf() -> bytes:
    """20 scanned A4 pages at 300 dpi, JPEG-compressed as scanners write them (~16 MB)."""
    images = [page_image(n, scanned=True) for n in range(1, PAGES + 1)]
    buf = io.BytesIO()
    images[0].save(buf, "PDF", save_all=True, append_images=images[1:], resolution=300.0, quality=60)
    return buf.getvalue()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    server = Simulator(ttft=0.1, itl=0.05).start()  # a page's extraction takes ~1.6 s
    yield server
    server.stop()


def llm_env(sim: Simulator) -> dict[str, str]:
    # Four streams at once: the 20 pages go in waves, so a kill lands mid-step.
    return {"OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": sim.base_url, "OFFLOAD_LLM_MODEL": "sim-model",
            "OFFLOAD_LLM_MAX_IN_FLIGHT": "4"}


def jobs_by_step(pipeline: dict) -> dict[str, list[dict]]:
    return {step["name"]: step["jobs"] for step in pipeline["steps"]}


@pytest.mark.slow
def test_a_worker_killed_mid_pipeline_loses_nothing_and_a_retry_reruns_only_the_failed_reduce(
        platform_factory, sim, scanned_pdf, redis_url):
    receiver = OtlpReceiver().start()
    try:
        platform = platform_factory.start(env={**ENV, **otel_env(receiver)}, worker_env={"llm": llm_env(sim)})
        r = platform.submit_pipeline(scanned_pdf, STEPS)
        assert r.status_code == 202, r.text
        created = r.json()
        pid, trace_id = created["id"], created["trace_id"]
        assert created["pages"] == PAGES and created["progress"]["jobs"] == 1 + PAGES + 1
        assert r.headers["location"].endswith(f"/v1/pipelines/{pid}")

        # SIGKILL the LLM worker while the extraction step is part done, part running.
        def part_done() -> bool:
            extract = jobs_by_step(platform.pipeline(pid))["extract"]
            states = [j["state"] for j in extract]
            return states.count("succeeded") >= 4 and "running" in states
        wait_for(part_done, 240, "the extraction step to be part done")
        platform.workers["llm"].signal(signal.SIGKILL)
        platform.workers["llm"].proc.wait(10)
        platform.workers["llm"] = platform_factory.start_worker("llm", platform_factory.env(**ENV, **otel_env(receiver),
                                                                                            **llm_env(sim)))

        # Every page ends; the reduce is refused once by the model server: the pipeline fails there.
        failed = platform.wait_pipeline(pid, {"failed", "succeeded"}, timeout=240)
        assert failed["state"] == "failed", failed
        steps = jobs_by_step(failed)
        assert [j["state"] for j in steps["ocr"] + steps["extract"]] == ["succeeded"] * (1 + PAGES)
        (combine,) = steps["combine"]
        assert combine["state"] == "failed" and "HTTP 400" in combine["error"]["message"]
        requests_before_retry = sim.counters.requests

        r = platform.http_post(f"/v1/pipelines/{pid}/retry")
        assert r.status_code == 202, r.text
        done = platform.wait_pipeline(pid, {"succeeded", "failed"}, timeout=60)
        assert done["state"] == "succeeded", done
        # Only the reduce ran again: one more request, and it saw every page's note.
        assert sim.counters.requests == requests_before_retry + 1
        last = sim.counters.bodies[-1]["messages"][-1]["content"]
        assert last.startswith("FAIL-ONCE Combine") and all(f"[page {n}]" in last for n in range(1, PAGES + 1))
        assert done["result"]["text"].strip() and done["progress"]["pages_done"] == PAGES

        # Each page's extraction was asked about its own page's text, read from the OCR result.
        ocr = platform.result(steps["ocr"][0]["id"])
        prompts = [b["messages"][-1]["content"] for b in sim.counters.bodies]
        for page in ocr["pages"]:
            assert any(p == EXTRACT.replace("{text}", page["text"]) for p in prompts), f"page {page['page']}"

        # No step's result was written twice, whatever ran twice after the kill.
        store = redis.Redis.from_url(redis_url)
        all_ids = [j["id"] for step in done["steps"] for j in step["jobs"]]
        assert [int(store.hget(keys.job(i), "result_writes")) for i in all_ids] == [1] * len(all_ids)
        assert int(store.hget(keys.job(steps["ocr"][0]["id"]), "attempts")) == 1

        # The live stream, replayed from the start, tells the whole story and ends with the end.
        events = platform.events(pid, path="pipelines")
        assert events[0][1] == "pipeline" and events[-1][1] == "end"
        # It ended failed at the reduce (its last open job), then again, succeeded, after the retry.
        assert [data["state"] for _, kind, data in events if kind == "end"] == ["failed", "succeeded"]
        moves = [data for _, kind, data in events if kind == "state"]
        assert {m["page"] for m in moves if m["state"] == "succeeded" and m["step"] == 1} == set(range(1, PAGES + 1))

        # One trace: the submit, every step's publish and run, the OCR pages and the generations
        # (the retried reduce runs in the retry request's trace, as any requeued job does). The
        # SIGKILLed LLM worker took with it the spans it had not exported yet, of runs that had
        # ended too, so its step is checked by what the live processes sent: every publish, and
        # the runs of the worker started after the kill.
        def whole() -> bool:
            names = [s.name for s in receiver.trace(trace_id)]
            return (names.count("ocr.page") == PAGES and names.count("apply_async/offload.llm.run") >= PAGES + 1
                    and "llm.generate" in names)

        try:
            receiver.wait_for(whole, 60, "the pipeline's spans")
        finally:
            spans = receiver.trace(trace_id)
            print(f"\npipeline {pid} trace {trace_id}: {len(spans)} spans\n" + summarise(spans))
        names = [s.name for s in spans]
        assert names.count("POST /v1/pipelines") == 1
        assert names.count("run/offload.ocr.run") == 1 and names.count("ocr.page") == PAGES
        # Each LLM job published once at submit, and again by the lease reaper if the kill took it.
        assert names.count("apply_async/offload.llm.run") >= PAGES + 1
        assert names.count("run/offload.llm.run") >= 1 and names.count("llm.generate") >= 1
        retried = platform.job(combine["id"])
        assert retried["trace_id"] != trace_id
        receiver.wait_for(lambda: "llm.generate" in {s.name for s in receiver.trace(retried["trace_id"])}, 30,
                          "the retried reduce's spans")
    finally:
        receiver.stop()


@pytest.mark.slow
def test_cancel_mid_pipeline_ends_what_runs_and_nothing_further_runs(platform_factory, sim, scanned_pdf, redis_url):
    platform = platform_factory.start(env=ENV, worker_env={"llm": llm_env(sim)})
    pid = platform.submit_pipeline(scanned_pdf, STEPS).json()["id"]
    wait_for(lambda: sum(j["state"] == "succeeded" for j in jobs_by_step(platform.pipeline(pid))["extract"]) >= 2,
             240, "the extraction step to be under way")
    r = platform.http_delete(f"/v1/pipelines/{pid}")
    assert r.status_code == 200 and r.json()["state"] in ("cancelling", "cancelled"), r.text
    done = platform.wait_pipeline(pid, {"cancelled"}, timeout=60)
    requests = sim.counters.requests
    steps = jobs_by_step(done)
    assert steps["ocr"][0]["state"] == "succeeded" and steps["combine"][0]["state"] == "cancelled"
    assert {j["state"] for j in steps["extract"]} <= {"succeeded", "cancelled"}
    assert any(j["state"] == "cancelled" for j in steps["extract"])
    time.sleep(3)  # anything still to run would have started by now
    assert sim.counters.requests == requests
    assert not any(b["messages"][-1]["content"].startswith("FAIL-ONCE") for b in sim.counters.bodies)
    store = redis.Redis.from_url(redis_url)
    assert store.llen("llm.normal") == 0 and store.zcard(keys.WAITING) == 0
    assert int(store.hget(keys.tenant_usage("alice"), "active")) == 0


def summarise(spans) -> str:
    """The trace's span names with counts, in the order they first appear (for the log)."""
    counts: dict[str, int] = {}
    for s in sorted(spans, key=lambda s: s.start_ns):
        counts[f"{s.service}: {s.name}"] = counts.get(f"{s.service}: {s.name}", 0) + 1
    return "\n".join(f"  {n} x {name}" for name, n in counts.items()) + "\n" + render_tree(spans)[:4000]
