"""The metrics, read by Prometheus itself. A real Prometheus (Debian's) scrapes all four services
every second while real jobs run through them: prefork workers whose job processes are recycled,
an LLM worker talking to the real llama.cpp server through a proxy that refuses or fails the
prompts that ask for it, real OCR. Then:

- `promtool check metrics` passes on every service's /metrics page;
- every query of k8s/grafana/queries.yaml (the dashboard's and the docs' queries) answers what
  the docs promise, checked against what the test did;
- the series stay the same through 500 more jobs: no label grows with jobs, tenants or paths.

The module runs the scenario once (`run`); each test checks one part of it. The answers are
printed (`pytest -s`) and written to prometheus-answers.txt in the test's temporary directory.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.documents import damaged_pixels_png, text_png
from tests.support.platform import TERMINAL, Platform, PlatformFactory
from tests.support.processes import TEST_DB, RedisServer
from tests.telemetry import dashboard
from tests.telemetry.backends import Prometheus, promtool
from tests.telemetry.recording_proxy import PromptFaults, RecordingProxy

pytestmark = pytest.mark.slow

SERVICES = ("gateway", "status", "worker-ocr", "worker-llm")
PRIORITIES = ("high", "normal", "low")
TENANTS = ("alice", "bob")
CONCURRENCY = 2
# One unit of work, 25 jobs; every unit is the same, so a second batch can only add series if a
# label grows with the jobs themselves. (kind, job type, how many)
UNIT = (("ok", "llm", 11), ("refuse", "llm", 2), ("retry-once", "llm", 2), ("unavailable", "llm", 1),
        ("ok", "ocr", 8), ("damaged", "ocr", 1))
UNIT_SIZE = sum(n for _, _, n in UNIT)
WARM_UP_UNITS, MEASURED_UNITS = 2, 20  # 50 jobs, then 500
EXPECTED_OUTCOME = {"ok": "succeeded", "refuse": "failed", "retry-once": "succeeded", "unavailable": "dead",
                    "damaged": "failed"}
RETRIES = {"retry-once": 1, "unavailable": 1}  # OFFLOAD_LLM_MAX_ATTEMPTS=2: one retry, then dead
BAD_REQUESTS_PER_UNIT = 3  # an unknown path on each API, and a submit with a wrong key


@dataclass
class Job:
    id: str
    kind: str
    type: str
    priority: str
    tenant: str
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """What one batch of units did, as the test saw it."""

    jobs: list[Job] = field(default_factory=list)
    bad_requests: Counter = field(default_factory=Counter)  # (service, status) -> count

    def submitted(self) -> Counter:
        return Counter((j.type, j.priority) for j in self.jobs)

    def finished(self) -> Counter:
        return Counter((j.type, j.record["state"]) for j in self.jobs)

    def retries(self) -> Counter:
        return Counter({t: sum(RETRIES.get(j.kind, 0) for j in self.jobs if j.type == t) for t in ("llm", "ocr")})


@dataclass
class Run:
    platform: Platform
    prometheus: Prometheus
    workdir: Path
    warm_up: Batch
    measured: Batch
    t1: float = 0.0  # after the warm-up, every target scraped
    t2: float = 0.0  # after the 500 jobs, every target scraped
    t3: float = 0.0  # after jobs were left queued with the OCR worker stopped
    queued_at: float = 0.0
    pages: dict[str, str] = field(default_factory=dict)  # service -> /metrics after the 500 jobs
    series_before: dict[tuple[str, str], float] = field(default_factory=dict)
    series_after: dict[tuple[str, str], float] = field(default_factory=dict)
    answers: list[str] = field(default_factory=list)

    @property
    def window(self) -> str:
        """The rate window of the measured batch: from the scrape after the warm-up to the last."""
        return f"{math.ceil(self.t2 - self.t1)}s"

    def ask(self, name: str, at: float | None = None) -> dict[tuple[str, ...], float]:
        """A query of queries.yaml at `at` (default t2): {label values: value}, the labels in the
        order its legend names them ("{{type}} {{priority}}" -> (type, priority))."""
        query = dashboard.queries()[name]
        labels = re.findall(r"{{(\w+)}}", query.legend)
        expr = query.promql(self.window)
        result = self.prometheus.query(expr, at=at or self.t2)
        answer = {tuple(r["metric"].get(label, "") for label in labels): r["value"] for r in result}
        self.answers.append(f"{name} @ {'t3' if at == self.t3 else 't2'}\n  {expr}\n  -> "
                            + (", ".join(f"{'/'.join(k) or '{}'}: {v:.4g}" for k, v in sorted(answer.items())) or "empty"))
        return answer


def submit(platform: Platform, kind: str, job_type: str, priority: str, tenant: str) -> Job:
    if job_type == "llm":
        marker = {"ok": "", "refuse": "[refuse] ", "unavailable": "[unavailable] ",
                  "retry-once": f"[unavailable-once:{uuid.uuid4().hex}] "}[kind]
        r = platform.submit_llm({"prompt": f"{marker}Say hi.", "max_tokens": 2, "temperature": 0,
                                 "priority": priority}, tenant=tenant)
    else:
        # A damaged PNG passes the gateway's checks and fails in the OCR worker, permanently.
        document = damaged_pixels_png() if kind == "damaged" else text_png("Prometheus counts this page")
        r = platform.submit_ocr(document, "page.png", tenant=tenant, fields={"priority": priority},
                                content_type="image/png")
    assert r.status_code == 202, r.text
    return Job(r.json()["id"], kind, job_type, priority, tenant)


def run_units(platform: Platform, units: int) -> Batch:
    batch = Batch()
    n = 0
    for _ in range(units):
        for kind, job_type, count in UNIT:
            for i in range(count):
                batch.jobs.append(submit(platform, kind, job_type, PRIORITIES[i % 3], TENANTS[i % 2]))
                n += 1
        # Requests that must land in bounded series: `unmatched`, not one per path.
        for service in ("gateway", "status"):
            r = httpx.get(f"{getattr(platform, service).url}/v1/no-such-thing/{uuid.uuid4().hex}",
                          headers=platform.headers(), timeout=10)
            batch.bad_requests[(service, str(r.status_code))] += 1
        r = httpx.post(f"{platform.gateway.url}/v1/jobs/llm", json={"prompt": "x"},
                       headers={"Authorization": f"Bearer wrong-{uuid.uuid4().hex}"}, timeout=10)
        batch.bad_requests[("gateway", str(r.status_code))] += 1
    wait_all(platform, batch.jobs)
    return batch


def wait_all(platform: Platform, jobs: list[Job], timeout: float = 600) -> None:
    """Wait until every job has ended, reading each from the status service (as a client would),
    without re-reading the whole batch every round."""
    pending = list(jobs)
    deadline = time.monotonic() + timeout
    while pending:
        still = []
        for job in pending:
            if still:  # the rest are likely still running too: look again next round
                still.append(job)
                continue
            job.record = platform.job(job.id, tenant=job.tenant)
            if job.record["state"] not in TERMINAL:
                still.append(job)
        pending = still
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} jobs not finished, e.g. {pending[0].record}")
            time.sleep(0.2)


def series_by_name(prometheus: Prometheus, at: float) -> dict[tuple[str, str], float]:
    return {(r["metric"]["__name__"], r["metric"]["job"]): r["value"]
            for r in prometheus.query('count by (__name__, job) ({__name__=~"offload_.+"})', at=at)}


@pytest.fixture(scope="module")
def run(redis_server: RedisServer, llama_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    redis_server.flush(TEST_DB)
    workdir = tmp_path_factory.mktemp("prometheus")
    proxy = RecordingProxy(llama_server.removesuffix("/v1"), faults=PromptFaults()).start()
    factory = PlatformFactory(redis_url=redis_server.db_url(TEST_DB), log_dir=workdir)
    prometheus = None
    try:
        platform = factory.start(metrics_ports=True, env={
            "OFFLOAD_WORKER_POOL": "prefork", "OFFLOAD_WORKER_CONCURRENCY": str(CONCURRENCY),
            # Job processes are replaced every 20 jobs: their counts must survive them.
            "OFFLOAD_WORKER_MAX_TASKS_PER_CHILD": "20",
            "OFFLOAD_LLM_MAX_ATTEMPTS": "2", "OFFLOAD_RATE_LIMIT_PER_MINUTE": "100000",
            # The status service's gauges (queues, running jobs) are refreshed in the background.
            "OFFLOAD_METRICS_REFRESH_SECONDS": "1",
        }, worker_env={"llm": {"OFFLOAD_LLM_BACKEND": "openai", "OFFLOAD_LLM_BASE_URL": f"{proxy.url}/v1",
                               "OFFLOAD_LLM_MAX_HTTP_ATTEMPTS": "1"}})
        prometheus = Prometheus({s: platform.metrics_url(s) for s in SERVICES}, workdir).start()
        prometheus.wait_for_scrape_after(time.time())
        r = Run(platform, prometheus, workdir, warm_up=run_units(platform, WARM_UP_UNITS), measured=Batch())

        time.sleep(2)  # every scrape from t1 on sees the warm-up's final counts
        r.t1 = prometheus.wait_for_scrape_after(time.time())
        r.series_before = series_by_name(prometheus, r.t1)
        r.measured = run_units(platform, MEASURED_UNITS)
        r.t2 = prometheus.wait_for_scrape_after(time.time())
        r.series_after = series_by_name(prometheus, r.t2)
        r.pages = {s: httpx.get(platform.metrics_url(s), timeout=10).raise_for_status().text for s in SERVICES}

        # Work that waits: no OCR worker, three OCR jobs at low priority.
        platform.workers["ocr"].stop()
        r.queued_at = time.time()
        for _ in range(3):
            submit(platform, "ok", "ocr", "low", "alice")
        time.sleep(3)
        r.t3 = prometheus.wait_for_scrape_after(time.time(), jobs=("gateway", "status", "worker-llm"))
        yield r
        (workdir / "prometheus-answers.txt").write_text("\n".join(r.answers) + "\n")
        print("\n" + "\n".join(r.answers))
    finally:
        if prometheus is not None:
            prometheus.stop()
        factory.stop_all()
        proxy.stop()


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def near(measured: float, expected: float) -> bool:
    """A rate times its window against a count: within 10% (Prometheus extrapolates to the window's ends)."""
    return abs(measured - expected) <= max(1.5, 0.1 * expected)


# -- promtool ---------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_promtool_check_metrics_passes_on_every_service_after_real_jobs(run: Run, service: str):
    page = run.pages[service]
    assert "offload_" in page
    result = promtool("check", "metrics", stdin=page)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
        f"promtool check metrics on {service}:\n{result.stdout}{result.stderr}"


# -- cardinality ------------------------------------------------------------------------------


def test_no_series_is_added_by_500_more_jobs(run: Run):
    assert len(run.measured.jobs) >= 500
    assert run.series_before, "Prometheus saw no offload_ series"
    assert run.series_after == run.series_before
    total = sum(run.series_after.values())
    run.answers.append(f"series: {int(total)} offload_ series before and after {len(run.measured.jobs)} jobs")


def test_no_label_names_a_job_a_tenant_a_key_or_a_path(run: Run):
    all_series = run.prometheus.query('{__name__=~"offload_.+"}', at=run.t2)
    every_value = {v for s in all_series for v in s["metric"].values()}
    job_ids = {j.id for j in run.warm_up.jobs + run.measured.jobs}
    assert not every_value & job_ids
    assert not every_value & set(run.platform.keys.values())
    assert not [v for v in every_value if "no-such-thing" in v]
    # The one tenant label is the LLM token counter's, bounded: the first
    # OFFLOAD_LLM_USAGE_METRIC_TENANTS tenants by name, every later one as "_other".
    with_tenant = [s["metric"] for s in all_series if "tenant" in s["metric"]]
    assert {m["__name__"] for m in with_tenant} <= {"offload_llm_tokens_total"}
    assert {m["tenant"] for m in with_tenant} <= set(run.platform.keys) | {"_other"}
    others = {v for s in all_series for k, v in s["metric"].items() if k != "tenant"}
    assert not others & set(run.platform.keys)


# -- the queries of queries.yaml --------------------------------------------------------------


def test_every_query_is_checked_here():
    checked = set(re.findall(r'ask\("([a-z0-9_]+)"', Path(__file__).read_text()))
    assert checked == set(dashboard.queries())


def test_jobs_submitted_per_type_and_priority(run: Run):
    answer = run.ask("jobs_submitted_rate")
    seconds = run.t2 - run.t1
    expected = run.measured.submitted()
    assert set(answer) == set(expected)
    for key, count in expected.items():
        assert near(answer[key] * seconds, count), (key, answer[key] * seconds, count)


def test_jobs_finished_per_type_and_outcome(run: Run):
    answer = run.ask("jobs_finished_rate")
    seconds = run.t2 - run.t1
    expected = run.measured.finished()
    assert expected == Counter({("llm", "succeeded"): 260, ("llm", "failed"): 40, ("llm", "dead"): 20,
                                ("ocr", "succeeded"): 160, ("ocr", "failed"): 20})
    assert set(answer) == set(expected)
    for key, count in expected.items():
        assert near(answer[key] * seconds, count), (key, answer[key] * seconds, count)


def test_failed_share_per_type(run: Run):
    answer = run.ask("jobs_failed_share")
    assert answer.keys() == {("llm",), ("ocr",)}
    assert abs(answer[("llm",)] - 60 / 320) < 0.03
    assert abs(answer[("ocr",)] - 20 / 180) < 0.03


def test_retries_per_type(run: Run):
    answer = run.ask("job_retries_rate")
    assert set(answer) == {("llm",)}  # OCR jobs never retried
    assert near(answer[("llm",)] * (run.t2 - run.t1), run.measured.retries()["llm"])


def bucket_ceiling(page: str, histogram: str, value: float) -> float:
    """The upper bound of the histogram's bucket that holds `value`: a quantile computed from the
    buckets can lie anywhere in the bucket of the true value, but never above it."""
    bounds = {float(le) for le in re.findall(rf'^{histogram}_bucket{{.*?le="([^"]+)"', page, re.MULTILINE)}
    return min(b for b in bounds if b >= value)


def test_run_duration_quantiles_fit_the_runs(run: Run):
    p50, p95 = run.ask("job_run_seconds_p50"), run.ask("job_run_seconds_p95")
    assert set(p50) == set(p95) == {("llm",), ("ocr",)}
    for (job_type,) in p50:
        longest = max(seconds_between(j.record["started_at"], j.record["finished_at"])
                      for j in run.measured.jobs if j.type == job_type)
        ceiling = bucket_ceiling(run.pages[f"worker-{job_type}"], "offload_job_run_seconds", longest)
        assert 0 < p50[(job_type,)] <= p95[(job_type,)] <= ceiling, (job_type, p50, p95, longest)


def test_queue_wait_quantile_per_type_and_priority(run: Run):
    answer = run.ask("job_queue_wait_seconds_p95")
    assert set(answer) == {(t, p) for t in ("llm", "ocr") for p in PRIORITIES}
    for (job_type, priority), p95 in answer.items():
        # The record's started_at is its last run's: never earlier than the first run's start.
        longest = max(seconds_between(j.record["created_at"], j.record["started_at"])
                      for j in run.measured.jobs if (j.type, j.priority) == (job_type, priority))
        ceiling = bucket_ceiling(run.pages[f"worker-{job_type}"], "offload_job_queue_wait_seconds", longest)
        assert 0 <= p95 <= ceiling, (job_type, priority, p95, longest)
    # Priority works: high-priority LLM jobs waited less than low-priority ones.
    assert answer[("llm", "high")] < answer[("llm", "low")]


def test_queue_depth_and_oldest_age_show_the_jobs_left_waiting(run: Run):
    queues = {f"{t}.{p}" for t in ("llm", "embed", "ocr", "probe") for p in PRIORITIES}
    depth = run.ask("queue_depth", at=run.t3)
    assert {k[0]: v for k, v in depth.items()} == {q: (3 if q == "ocr.low" else 0) for q in queues}
    age = run.ask("queue_oldest_age_seconds", at=run.t3)
    assert {k[0] for k, v in age.items() if v > 0} == {"ocr.low"}
    assert 1 <= age[("ocr.low",)] <= run.t3 - run.queued_at + 2
    # While the 500 jobs ran, work did queue up (submits outpace two slots per worker).
    during = run.prometheus.query_range(dashboard.queries()["queue_depth"].expr, run.t1, run.t2)
    assert max(max(s["values"]) for s in during) > 0


def test_running_jobs_reach_but_never_pass_the_workers_slots(run: Run):
    assert {k: v for k, v in run.ask("jobs_running").items()} == {("llm",): 0, ("embed",): 0, ("ocr",): 0,
                                                                  ("probe",): 0}
    during = run.prometheus.query_range(dashboard.queries()["jobs_running"].expr, run.t1, run.t2)
    peaks = {s["metric"]["type"]: max(s["values"]) for s in during if max(s["values"]) > 0}
    assert peaks.keys() == {"llm", "ocr"}
    assert all(1 <= peak <= CONCURRENCY for peak in peaks.values()), peaks


def test_dead_letters_count_every_dead_job(run: Run):
    dead = sum(1 for j in run.warm_up.jobs + run.measured.jobs if j.record["state"] == "dead")
    assert run.ask("dead_letters") == {(): dead}


def test_no_lost_messages(run: Run):
    assert run.ask("lost_messages_requeued_1h") == {(): 0}


def test_retries_were_queued_by_the_mover_and_nothing_was_lost_or_drifted(run: Run):
    """Every retry waited in the delayed set and the gateway's mover queued it: as many moves as
    retries. No worker was lost, no record was missing, no quota count drifted."""
    seconds = run.t2 - run.t1
    moved = run.ask("delayed_jobs_moved_rate")
    retried = run.ask("job_retries_rate")
    assert near(sum(moved.values()) * seconds, sum(retried.values()) * seconds), (moved, retried)
    assert run.ask("lost_runs_requeued_1h") == {(): 0}
    assert run.ask("missing_records_1h") == {(): 0}
    assert run.ask("quota_drift_jobs") == {(): 0}
    assert run.ask("quota_drift_bytes") == {(): 0}
    assert run.ask("quota_corrections_1h") == {(): 0}


def test_no_webhook_was_asked_for(run: Run):
    """The jobs here have no callback_url: the dispatcher made no attempt (0, not 'no data')."""
    assert run.ask("webhook_attempts_rate") == {("",): 0}  # `or vector(0)`: no outcome label
    assert all(math.isnan(v) for v in run.ask("webhook_attempt_seconds_p95").values())


def test_limits_report_their_caps_and_refused_nothing_here(run: Run):
    used, limit = run.ask("redis_used_memory_bytes"), run.ask("redis_maxmemory_bytes")
    assert used[()] > 0 and limit == {(): 0}  # the test Redis has no maxmemory: the guard never refuses
    assert run.ask("sse_streams_limit") == {(): 1000}
    assert all(v >= 0 for v in run.ask("sse_streams").values())
    assert run.ask("http_connections_limit") == {(): 2048}
    connections = run.ask("http_connections")  # API connections: Prometheus scrapes the metrics port
    assert {job for job, _ in connections} == {"gateway", "status"} and all(v >= 0 for v in connections.values())
    assert all(v == 0 for v in run.ask("http_refused_rate").values())
    assert all(v == 0 for v in run.ask("sse_streams_refused_rate").values())


def test_no_object_store_is_configured_so_payloads_stay_inline(run: Run):
    assert all(v == 0 for v in run.ask("payload_bytes_rate").values())
    assert all(v == 0 for v in run.ask("payload_errors_rate").values())
    assert all(math.isnan(v) for v in run.ask("payload_operation_seconds_p95").values())
    assert all(v == 0 for v in run.ask("payload_spool_bytes").values())
    assert all(v == 0 for v in run.ask("payload_spool_full_1h").values())


def test_llm_tokens_per_model_and_kind_and_no_waits_without_a_cap(run: Run):
    answer = {k: v for k, v in run.ask("llm_tokens_rate").items() if k != ("", "")}  # ("", ""): `or vector(0)`
    assert {kind for _, kind in answer} == {"prompt", "completion"}, answer
    assert all(v > 0 for (_, kind), v in answer.items() if kind == "completion"), answer
    # Completion tokens: at most max_tokens (2) for each LLM job that succeeded in the batch.
    seconds = run.t2 - run.t1
    succeeded = run.measured.finished()[("llm", "succeeded")]
    completion = sum(v for (_, kind), v in answer.items() if kind == "completion") * seconds
    assert completion <= 2 * succeeded * 1.15, (completion, succeeded)
    assert all(v == 0 for v in run.ask("capacity_waits_rate").values())  # no model has a capacity here


def test_the_registry_sees_both_workers_live_and_none_lost(run: Run):
    live = run.ask("workers_live")
    assert live[("ocr",)] >= 1 and live[("llm",)] >= 1, live
    assert all(v == 0 for v in run.ask("workers_lost_1h").values())


def test_no_batch_or_file_so_their_series_stay_at_zero(run: Run):
    answers = [run.ask("batches_running"), run.ask("batch_lines_in_flight"), run.ask("batch_lines_fed_rate"),
               run.ask("batch_lines_finished_rate"), run.ask("batches_finished_rate"), run.ask("files_created_rate"),
               run.ask("file_bytes_created_rate"), run.ask("files_deleted_rate")]
    assert all(v == 0 for answer in answers for v in answer.values()), answers


def test_http_request_rates_by_service_and_status(run: Run):
    answer = run.ask("http_requests_rate")
    seconds = run.t2 - run.t1
    assert near(answer[("gateway", "202")] * seconds, len(run.measured.jobs))
    for (service, status), count in run.measured.bad_requests.items():
        assert near(answer[(service, status)] * seconds, count), (service, status)
    assert run.measured.bad_requests.keys() == {("gateway", "404"), ("status", "404"), ("gateway", "401")}
    assert answer[("status", "200")] * seconds >= len(run.measured.jobs)  # each job read at least once
    assert not [k for k in answer if k[1].startswith("5")]


def test_http_latency_per_route(run: Run):
    answer = run.ask("http_request_seconds_p95")
    routes = {k: v for k, v in answer.items() if not math.isnan(v)}
    assert {("gateway", "/v1/jobs/llm"), ("gateway", "/v1/jobs/ocr"), ("gateway", "unmatched"),
            ("status", "/v1/jobs/{job_id}"), ("status", "unmatched")} <= routes.keys()
    assert all(0 < v < 5 for v in routes.values()), routes


def test_server_error_share_is_zero_not_missing(run: Run):
    assert run.ask("http_server_error_share") == {("gateway",): 0, ("status",): 0}
