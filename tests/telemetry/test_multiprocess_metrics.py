"""A prefork worker's /metrics is the sum over its job processes, including recycled ones.

Each scenario runs in a fresh interpreter: switching prometheus_client to multiprocess mode is
process-wide, and job processes are real forks that count and exit, as Celery's children do.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.telemetry.prom import Samples, parse

SCENARIO = """
import multiprocessing, os, sys
# Imported before the switch, as the worker's runner is: the order must not matter.
from offload_core.jobs import metrics as job_metrics
from offload_core.observability import exposition as metrics
from offload_core.observability import multiprocess as multiprocess_metrics
from offload_core.types import JobType, Priority

multiprocess_metrics.enable(sys.argv[1])

def job_process(jobs):
    for _ in range(jobs):
        job_metrics.submitted(JobType.LLM, Priority.HIGH)
        job_metrics.JOB_RUN_SECONDS.labels(type="llm", outcome="succeeded").observe(0.3)

fork = multiprocessing.get_context("fork")
for jobs in (1, 2, 3):  # three children, each recycled after its jobs
    child = fork.Process(target=job_process, args=(jobs,))
    child.start()
    child.join()
first = metrics.render_latest()[1].decode()
second = metrics.render_latest()[1].decode()
ours = lambda text: [line for line in text.splitlines() if line.startswith("offload_")]
assert ours(first) == ours(second), "a second scrape after folding must report the same totals"
print(first)
print("FILES " + " ".join(sorted(os.listdir(sys.argv[1]))))
"""


def run_scenario(directory: Path) -> tuple[Samples, list[str]]:
    out = subprocess.run([sys.executable, "-c", SCENARIO, str(directory)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    text, _, files = out.rpartition("FILES ")
    return parse(text), files.split()


def test_counts_of_exited_job_processes_are_summed_and_folded_into_one_file_per_type(tmp_path: Path):
    samples, files = run_scenario(tmp_path)
    assert samples[("offload_jobs_submitted_total", frozenset({("type", "llm"), ("priority", "high")}))] == 6
    run = frozenset({("type", "llm"), ("outcome", "succeeded")})
    assert samples[("offload_job_run_seconds_count", run)] == 6
    assert samples[("offload_job_run_seconds_bucket", run | {("le", "0.5")})] == 6
    assert samples[("offload_job_run_seconds_bucket", run | {("le", "0.25")})] == 0
    assert files == ["counter_archive.db", "histogram_archive.db"]


def test_a_restarted_worker_starts_from_zero_not_from_the_last_run_files(tmp_path: Path):
    run_scenario(tmp_path)
    samples, _ = run_scenario(tmp_path)
    assert samples[("offload_jobs_submitted_total", frozenset({("type", "llm"), ("priority", "high")}))] == 6
