"""The routing table: which queue a job goes to and which task runs it (and delivers its webhook).

Queue names are `<type>.<priority>` (DESIGN §4). They are also the Redis list names that KEDA
reads, so this module is the only place that builds them.
"""

from __future__ import annotations

from offload_core.types import PRIORITY_ORDER, JobType, Priority

TASK_NAMES: dict[JobType, str] = {
    JobType.OCR: "offload.ocr.run",
    JobType.LLM: "offload.llm.run",
}
# A job's webhook delivery, queued on the job's own queue once it ends.
WEBHOOK_TASK = "offload.webhook.deliver"


def queue_name(job_type: JobType | str, priority: Priority | str) -> str:
    return f"{JobType(job_type).value}.{Priority(priority).value}"


def queues_for(job_type: JobType | str) -> list[str]:
    """A worker's queues, highest priority first: the order it consumes them in."""
    return [queue_name(job_type, p) for p in PRIORITY_ORDER]


ALL_QUEUES: list[str] = [q for t in JobType for q in queues_for(t)]
