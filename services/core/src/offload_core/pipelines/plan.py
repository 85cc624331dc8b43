"""The jobs a pipeline makes, and which waits for which: worked out once, at submit.

The OCR step is one job. An LLM step is one job, or with `per_page` one job per page. A job
waits for the jobs it reads:

    after the OCR step or a one-job step    every job of the step before (one)
    a per-page job after a per-page step    the job of the same page before it
    a one-job step after a per-page step    every page's job (it reduces them)

so the pages of a chain of per-page steps go on independently, and a reduce step starts when
its last page is done. The page count is the document's own (the gateway reads it at submit),
which is why every job can exist, waiting, from the start: nothing is created later, so no
crash between two steps can lose one (finish.lua queues a job in the step that ends its wait).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from offload_core.pipelines.spec import LlmStep, PipelineRequest
from offload_core.types import JobType


@dataclass
class PlannedJob:
    id: str
    step: int  # 0 is the OCR step
    page: int | None  # 1-based, for a per-page job
    type: JobType
    inputs: list[str] = field(default_factory=list)  # the jobs it waits for and reads, in page order
    next: list[str] = field(default_factory=list)  # the jobs that wait for it

    def params(self, pipeline_id: str, step_name: str) -> dict[str, Any]:
        """What the job's `params` say about its place in the pipeline (the worker reads `inputs`)."""
        out: dict[str, Any] = {"pipeline": pipeline_id, "step": self.step, "step_name": step_name}
        if self.page is not None:
            out["page"] = self.page
        if self.inputs:
            out["inputs"] = self.inputs
        return out


def plan(request: PipelineRequest, pages: int) -> list[list[PlannedJob]]:
    """The jobs of each step, in step order; job ids are new UUIDs."""
    steps: list[list[PlannedJob]] = [[PlannedJob(str(uuid.uuid4()), 0, None, JobType.OCR)]]
    for number, step in enumerate(request.steps[1:], start=1):
        assert isinstance(step, LlmStep)
        before = steps[-1]
        if step.per_page:
            jobs = [PlannedJob(str(uuid.uuid4()), number, page, JobType.LLM) for page in range(1, pages + 1)]
            for job in jobs:
                # After the OCR step (one job) every page reads it; after a per-page step, its own page.
                source = before[0] if len(before) == 1 and before[0].page is None else before[job.page - 1]
                job.inputs.append(source.id)
                source.next.append(job.id)
        else:
            jobs = [PlannedJob(str(uuid.uuid4()), number, None, JobType.LLM)]
            for source in before:
                jobs[0].inputs.append(source.id)
                source.next.append(jobs[0].id)
        steps.append(jobs)
    return steps
