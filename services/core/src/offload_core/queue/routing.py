"""The routing table: which queue a job goes to, which task runs it, which queues a worker takes.

Queue names are `<type>.<priority>` (DESIGN §4). They are also the Redis list names that KEDA
reads, so this module is the only place that builds them. The scripts never build one: a job's
record carries its queue's name.
"""

from __future__ import annotations

from offload_core.types import PRIORITY_ORDER, SERVED_BY, JobType, Priority

TASK_NAMES: dict[JobType, str] = {
    JobType.OCR: "offload.ocr.run",
    JobType.LLM: "offload.llm.run",
    JobType.EMBED: "offload.embed.run",
    JobType.PROBE: "offload.probe.run",
}


def queue_name(job_type: JobType | str, priority: Priority | str) -> str:
    return f"{JobType(job_type).value}.{Priority(priority).value}"


def queues_of(job_type: JobType | str) -> list[str]:
    """A job type's three queues, highest priority first."""
    return [queue_name(job_type, p) for p in PRIORITY_ORDER]


def consumed_by(worker_type: JobType | str) -> list[str]:
    """The queues a worker of `worker_type` takes, in the strict order it takes them: at each
    priority, its own queue, then those of the other types it runs (SERVED_BY: embeddings on
    the LLM workers, probes on every worker)."""
    return [queue_name(t, p) for p in PRIORITY_ORDER for t in SERVED_BY[JobType(worker_type)]]


ALL_QUEUES: list[str] = [q for t in JobType for q in queues_of(t)]
