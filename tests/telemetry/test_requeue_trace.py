"""A requeued job's next run joins the trace of the request that requeued it, and the record
follows: `trace_id` names the trace of the latest run, the `queued` event the one before."""

from __future__ import annotations

import httpx

from tests.support.platform import PlatformFactory
from tests.telemetry.conftest import TracedClient, otel_env
from tests.telemetry.otlp_receiver import OtlpReceiver, render_tree
from tests.worker_llm.llm_peer import Reply, ScriptedPeer, good_stream

JOB_ID_ATTRIBUTE = "offload.job_id"


def run_spans(receiver: OtlpReceiver, trace_id: str, job_id: str) -> list:
    return [s for s in receiver.trace(trace_id)
            if s.service == "offload-worker-llm" and s.attributes.get(JOB_ID_ATTRIBUTE) == job_id]


def test_a_requeued_job_runs_in_the_requeue_requests_trace_and_its_record_says_so(
        platform_factory: PlatformFactory, otlp_receiver: OtlpReceiver):
    peer = ScriptedPeer().start()
    # First run: the model server refuses the request (permanent: the job fails). After that it answers.
    peer.script = [Reply(status=400, json_body={"error": {"message": "bad request"}}), good_stream("Hi", " there")]
    traced = TracedClient(otlp_receiver.endpoint)
    try:
        platform = platform_factory.start(workers=("llm",), env=otel_env(otlp_receiver), worker_env={"llm": {
            "OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": peer.base_url, "OFFLOAD_LLM_MODEL": "peer-model"}})
        with traced.span("client: submit") as first_trace:
            job_id = platform.submit_llm({"prompt": "Hi", "max_tokens": 4}, **traced.traceparent()).json()["id"]
        assert platform.wait(job_id)["state"] == "failed"
        with traced.span("client: requeue") as second_trace:
            r = httpx.post(f"{platform.gateway.url}/v1/jobs/{job_id}/retry",
                           headers=platform.headers(**traced.traceparent()), timeout=10)
            assert r.status_code == 202, r.text
        job = platform.wait(job_id)
        assert job["state"] == "succeeded", job
        assert first_trace != second_trace
        assert job["trace_id"] == second_trace

        requeued = [data for _, kind, data in platform.events(job_id) if kind == "state" and data.get("requeued")]
        assert requeued == [{"state": "queued", "at": requeued[0]["at"], "requeued": True,
                             "previous_trace_id": first_trace}], requeued

        # Each run is in its own request's trace: the failed one in the submit's, the next in the requeue's.
        def requeue_request_spans() -> list:
            return [s for s in otlp_receiver.trace(second_trace)
                    if s.service == "offload-gateway" and s.name.startswith("apply_async/")]

        otlp_receiver.wait_for(lambda: run_spans(otlp_receiver, first_trace, job_id)
                               and run_spans(otlp_receiver, second_trace, job_id) and requeue_request_spans(),
                               30, "both runs' spans and the requeue's publish span")
        # The second run hangs under the message the requeue published.
        publish = requeue_request_spans()
        runs = [s for s in run_spans(otlp_receiver, second_trace, job_id) if s.kind == "CONSUMER"]
        assert len(publish) == 1 and [r.parent_span_id for r in runs] == [publish[0].span_id], \
            render_tree(otlp_receiver.trace(second_trace))
    finally:
        traced.close()
        peer.stop()
