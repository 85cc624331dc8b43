"""Pipelines in the job store: create one atomically, read its aggregate, cancel it, retry it.

A pipeline is a hash (`offload:pipeline:{id}`: its steps and their job ids, how many of its jobs
are open, succeeded, failed and cancelled) beside ordinary jobs that carry four more fields:
`pipeline_key` and `pipeline_events` (where their moves are told), `step` and `page`, and `next`
(the keys of the jobs that wait for them). The scripts keep the counts: finish.lua when a job
ends (and queues the jobs waiting for it), requeue.lua when a failed one is retried, claim.lua
tells its start. What a reader sees (state, progress) is worked out here from the jobs' states.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from offload_core.jobs import keys, scripts
from offload_core.jobs import metrics as job_metrics
from offload_core.jobs.record import Job, as_text, iso
from offload_core.jobs.store import JobStore, looks_like_id, parse_cursor, unavailable_as_error
from offload_core.observability.tracing import publish_span
from offload_core.pipelines.plan import PlannedJob, plan
from offload_core.pipelines.spec import LlmStep, PipelineRequest
from offload_core.queue.messages import build_task_message
from offload_core.queue.routing import TASK_NAMES, queue_name
from offload_core.types import TERMINAL_STATES, JobState, JobType, Priority

_json = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True)
class OcrInput:
    """The document of the pipeline's OCR step, as the OCR submit route would store it."""

    payload: bytes  # inline; b"" when it is in object storage
    params: dict[str, Any]  # languages, filename, kind, pages, bytes
    payload_ref: str | None = None
    payload_size: int | None = None
    payload_sha256: str = ""  # hex; with the inline bytes too, for Idempotency-Key

    @property
    def size(self) -> int:
        return self.payload_size if self.payload_ref is not None and self.payload_size is not None else len(self.payload)


@dataclass(frozen=True)
class NewPipeline:
    tenant: str
    request: PipelineRequest
    document: OcrInput
    pages: int
    llm_params: list[dict[str, Any]]  # per LLM step, the job params' summary (model, max_tokens, ...)
    tokens: int = 0  # what its LLM jobs may use, under OFFLOAD_LLM_TOKENS_PER_MINUTE
    idempotency_key: str | None = None
    trace_id: str | None = None
    pipeline_id: str | None = None

    def digest(self) -> str:
        h = hashlib.sha256(self.request.model_dump_json().encode())
        h.update(b"\0" + self.document.payload_sha256.encode())
        return h.hexdigest()


@dataclass(frozen=True)
class CreateOutcome:
    status: str  # created | existing | conflict | rate_limited | tokens_limited | quota_exceeded | bytes_exceeded
    pipeline_id: str
    jobs: int = 0
    retry_after: int = 0  # seconds, when rate or token limited (the minute's end)


class PipelineStore:
    def __init__(self, jobs: JobStore) -> None:
        self.jobs, self.redis, self.settings = jobs, jobs.redis, jobs.settings
        self._create = scripts.CREATE_PIPELINE.register(self.redis)

    # -- writes -----------------------------------------------------------------------------

    async def create(self, new: NewPipeline) -> CreateOutcome:
        s, now = self.settings, time.time()
        pipeline_id = new.pipeline_id or str(uuid.uuid4())
        steps = plan(new.request, new.pages)
        priority = new.request.priority
        by_key = {j.id: keys.job(j.id) for step in steps for j in step}
        planned: list[dict[str, Any]] = []
        payloads: list[bytes] = []
        for number, jobs in enumerate(steps):
            step = new.request.steps[number]
            if number == 0:
                payload, params = new.document.payload, dict(new.document.params)
            else:
                assert isinstance(step, LlmStep)
                payload = step.request().model_dump_json(exclude_none=True).encode()
                params = dict(new.llm_params[number - 1])
            for job in jobs:
                planned.append(self._job_entry(pipeline_id, job, step.name or "", params, payload, new, now, by_key))
                payloads.append(payload)
        total_bytes = new.document.size + sum(len(p) for p in payloads[1:])
        record = {
            "id": pipeline_id, "tenant": new.tenant, "priority": priority.value, "created_at": repr(now),
            "total": str(len(planned)), "open": str(len(planned)), "succeeded": "0", "failed": "0", "cancelled": "0",
            "pages": str(new.pages), "trace_id": new.trace_id or "",
            "steps": _json([{"name": st.name, "type": st.type, "per_page": bool(getattr(st, "per_page", False)),
                             "jobs": [j.id for j in jobs]} for st, jobs in zip(new.request.steps, steps)]),
            "request": new.request.model_dump_json(exclude_none=True),
        }
        minute = int(now // 60)
        idem = new.idempotency_key or ""
        async with unavailable_as_error():
            status, ident = await self._create(
                idem_key=keys.idempotency(new.tenant, "pipeline:" + idem), rate_key=keys.tenant_rate(new.tenant, minute),
                usage_key=keys.tenant_usage(new.tenant), pending_key=keys.PENDING, waiting_key=keys.WAITING,
                tenant_jobs_key=keys.tenant_jobs(new.tenant), pipeline_key=keys.pipeline(pipeline_id),
                tenant_pipelines_key=keys.tenant_pipelines(new.tenant), tpm_key=keys.tenant_tpm(new.tenant, minute),
                pipeline_id=pipeline_id, digest=new.digest() if idem else "", idem_ttl=s.idempotency_ttl_seconds,
                has_idem="1" if idem else "0", rate_limit=s.rate_limit_per_minute, rate_ttl=120,
                max_active=s.max_queued_per_tenant, max_bytes=s.max_queued_bytes_per_tenant, now=repr(now),
                pipeline_fields=_json([x for kv in record.items() for x in kv]), jobs=_json(planned),
                total_bytes=total_bytes, tpm_limit=s.llm_tokens_per_minute, tpm_cost=new.tokens, extra_args=payloads,
            )
        status = as_text(status)
        if status == "created":
            for entry in planned:
                job_metrics.submitted(JobType(entry["type"]), priority)
        limited = status in ("rate_limited", "tokens_limited")
        return CreateOutcome(status, as_text(ident), len(planned), max(1, int(60 - now % 60) + 1) if limited else 0)

    def _job_entry(self, pipeline_id: str, planned: PlannedJob, step_name: str, params: dict[str, Any],
                   payload: bytes, new: NewPipeline, now: float, by_key: dict[str, str]) -> dict[str, Any]:
        priority = new.request.priority
        queue = queue_name(planned.type, priority)
        waits = len(planned.inputs)
        is_ocr = planned.type is JobType.OCR
        job = Job(
            id=planned.id, type=planned.type, tenant=new.tenant, priority=priority,
            state=JobState.WAITING if waits else JobState.QUEUED, max_attempts=self.settings.max_attempts(planned.type),
            created_at=now, queued_at=None if waits else now,
            params={**params, **planned.params(pipeline_id, step_name)}, trace_id=new.trace_id, queue=queue,
            payload_bytes=new.document.size if is_ocr else len(payload),
            payload_ref=new.document.payload_ref if is_ocr else None,
        )
        fields = job.to_hash()
        tag = str(uuid.uuid4())
        fields.update(pipeline_key=keys.pipeline(pipeline_id), pipeline_events=keys.pipeline_events(pipeline_id),
                      step=str(planned.step), next=_json([by_key[i] for i in planned.next]), message_tag=tag)
        if planned.page is not None:
            fields["page"] = str(planned.page)
        # Every message is made now, under the submit request's trace: each step's run joins it.
        with publish_span(TASK_NAMES[planned.type], queue, planned.id) as trace_headers:
            message = build_task_message(self.jobs.app, job_id=planned.id, job_type=planned.type, queue=queue,
                                         tenant=new.tenant, headers=trace_headers, delivery_tag=tag)
        return {"key": keys.job(planned.id), "id": planned.id, "type": planned.type.value,
                "fields": [x for kv in fields.items() for x in kv], "queue": queue, "message": message,
                "waits": waits}

    async def cancel(self, pipeline_id: str, tenant: str) -> "PipelineView | None":
        """Cancel every job of the pipeline that has not ended (a running one stops at its next
        checkpoint). None when there is no such pipeline for `tenant`."""
        view = await self.get(pipeline_id, tenant)
        if view is None:
            return None
        if view.open:
            async with unavailable_as_error():
                await self.redis.hset(keys.pipeline(pipeline_id), "cancel_requested", "1")
            # The last steps first: a job queued by its step ending meanwhile is cancelled all the same.
            for job in reversed(view.jobs):
                if job.state not in TERMINAL_STATES:
                    status, _ = await self.jobs.cancel(job.id, tenant)
                    if status == "cancelled":
                        job_metrics.finished(job.type, job.priority, JobState.CANCELLED)
        return await self.get(pipeline_id, tenant)

    async def retry(self, pipeline_id: str, tenant: str) -> tuple[str, "PipelineView | None"]:
        """Requeue the pipeline's failed jobs; the jobs after them (parked) go on when they succeed.
        Returns (requeued | missing | not_failed | cancelled | <requeue refusal>, the pipeline)."""
        view = await self.get(pipeline_id, tenant)
        if view is None:
            return "missing", None
        failed = [j for j in view.jobs if j.state in (JobState.FAILED, JobState.DEAD)]
        if not failed:
            return "not_failed", view
        if any(j.state is JobState.CANCELLED for j in view.jobs) or view.cancel_requested:
            return "cancelled", view
        for job in failed:
            status, _ = await self.jobs.requeue(job.id, tenant)
            if status != "queued":
                return status, await self.get(pipeline_id, tenant)
        return "requeued", await self.get(pipeline_id, tenant)

    # -- reads ------------------------------------------------------------------------------

    async def get(self, pipeline_id: str, tenant: str | None, *, with_result: bool = False) -> "PipelineView | None":
        if not looks_like_id(pipeline_id):
            return None
        async with unavailable_as_error():
            raw = await self.redis.hgetall(keys.pipeline(pipeline_id))
        if not raw:
            return None
        h = {as_text(k): as_text(v) for k, v in raw.items()}
        if tenant is not None and h.get("tenant") != tenant:
            return None
        steps = json.loads(h["steps"])
        ids = [i for step in steps for i in step["jobs"]]
        async with unavailable_as_error():
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(keys.job(job_id), VIEW_FIELDS)
            last = steps[-1]["jobs"]
            if with_result:
                for job_id in last:
                    pipe.hget(keys.job(job_id), "result")
            replies = await pipe.execute()
        jobs = [_step_job(job_id, values) for job_id, values in zip(ids, replies)]
        results = [json.loads(r) if r else None for r in replies[len(ids):]] if with_result else None
        return PipelineView(h, steps, jobs, results)

    async def list(self, tenant: str, *, cursor: str | None, limit: int) -> tuple[list["PipelineView"], str | None]:
        """The tenant's pipelines, newest first; the cursor is as for jobs ("<created_at>|<id>")."""
        after_score, after_id = parse_cursor(cursor)
        upper = repr(after_score) if after_score is not None else "+inf"
        async with unavailable_as_error():
            page = await self.redis.zrevrangebyscore(keys.tenant_pipelines(tenant), upper, "-inf", start=0,
                                                     num=limit + 2, withscores=True)
        page = [(as_text(m), sc) for m, sc in page
                if not (after_score is not None and sc == after_score and after_id is not None and as_text(m) >= after_id)]
        found: list[PipelineView] = []
        for member, score in page[:limit]:
            view = await self.get(member, tenant)
            if view is not None:  # expired since (the index is trimmed by maintenance)
                found.append(view)
        more = len(page) > limit
        return found, (f"{page[limit - 1][1]!r}|{page[limit - 1][0]}" if more else None)

    async def events(self, pipeline_id: str, after: str = "0-0", count: int = 500) -> list[tuple[str, str, str]]:
        """The pipeline's events after `after`: (id, kind, data json); kind is state | blocked | end."""
        async with unavailable_as_error():
            rows = await self.redis.xrange(keys.pipeline_events(pipeline_id),
                                           min=f"({after}" if after != "0-0" else "-", count=count)
        return [(as_text(i), as_text(f[b"kind"]), as_text(f[b"data"])) for i, f in rows]


VIEW_FIELDS = ("state", "type", "priority", "attempts", "error", "started_at", "finished_at")


@dataclass(frozen=True)
class StepJob:
    id: str
    state: JobState | None  # None: its record expired
    type: JobType
    priority: Priority
    attempts: int
    error: dict[str, Any] | None
    started_at: float | None
    finished_at: float | None


def _step_job(job_id: str, values: list[bytes | None]) -> StepJob:
    state, jtype, priority, attempts, error, started, finished = (as_text(v) if v is not None else None for v in values)
    return StepJob(job_id, JobState(state) if state else None, JobType(jtype or "llm"), Priority(priority or "normal"),
                   int(attempts or 0), json.loads(error) if error and error != "null" else None,
                   float(started) if started else None, float(finished) if finished else None)


class PipelineView:
    """A pipeline as a reader sees it: its state worked out from its jobs' states."""

    def __init__(self, h: dict[str, str], steps: list[dict[str, Any]], jobs: list[StepJob],
                 results: list[Any] | None) -> None:
        self.h, self.steps, self.jobs, self.results = h, steps, jobs, results
        self.id = h["id"]
        self.cancel_requested = h.get("cancel_requested") == "1"
        self.open = sum(1 for j in jobs if j.state is not None and j.state not in TERMINAL_STATES)

    @property
    def state(self) -> str:
        states = [j.state for j in self.jobs]
        if all(s is JobState.SUCCEEDED for s in states):
            return "succeeded"
        if self.cancel_requested:
            return "cancelling" if any(s is JobState.RUNNING for s in states) else "cancelled"
        if any(s in (JobState.FAILED, JobState.DEAD) for s in states):
            return "failed"
        if any(s is JobState.CANCELLED or s is None for s in states):
            return "cancelled"
        if any(s in (JobState.RUNNING, JobState.RETRYING) for s in states) or any(
                s is JobState.SUCCEEDED for s in states):
            return "running"
        return "queued"

    def to_api(self, *, status_base_url: str = "") -> dict[str, Any]:
        by_id = {j.id: j for j in self.jobs}
        pages = int(self.h.get("pages") or 0)
        steps_out, steps_done = [], 0
        for step in self.steps:
            jobs = [by_id[i] for i in step["jobs"]]
            done = sum(1 for j in jobs if j.state is JobState.SUCCEEDED)
            steps_done += done == len(jobs)
            steps_out.append({
                "name": step["name"], "type": step["type"], "per_page": step["per_page"],
                "state": _step_state([j.state for j in jobs]), "done": done, "jobs": [
                    {"id": j.id, "state": j.state.value if j.state else "expired", "attempts": j.attempts,
                     **({"page": k + 1} if step["per_page"] else {}),
                     **({"error": j.error} if j.error else {})} for k, j in enumerate(jobs)],
            })
        body: dict[str, Any] = {
            "id": self.id, "object": "pipeline", "state": self.state, "priority": self.h.get("priority"),
            "created_at": iso(float(self.h["created_at"])),
            "ended_at": iso(float(self.h["ended_at"])) if self.h.get("ended_at") else None,
            "pages": pages, "trace_id": self.h.get("trace_id") or None,
            "progress": {"steps_done": steps_done, "steps": len(self.steps), "jobs_done": int(self.h.get("succeeded", 0)),
                         "jobs": int(self.h.get("total", 0)), "pages_done": _pages_done(self.steps, by_id),
                         "pages": pages},
            "steps": steps_out,
            "links": {"self": f"{status_base_url}/v1/pipelines/{self.id}",
                      "events": f"{status_base_url}/v1/pipelines/{self.id}/events"},
        }
        if self.results is not None:
            last = self.steps[-1]
            if self.state == "succeeded":
                body["result"] = self.results if last["per_page"] else self.results[0]
            else:
                body["result"] = None
        return body


def _pages_done(steps: list[dict[str, Any]], by_id: dict[str, StepJob]) -> int:
    """Pages through every per-page step (0 when there are none)."""
    per_page = [s for s in steps if s["per_page"]]
    if not per_page:
        return 0
    pages = len(per_page[0]["jobs"])
    return sum(1 for page in range(pages)
               if all(by_id[s["jobs"][page]].state is JobState.SUCCEEDED for s in per_page))


def _step_state(states: list[JobState | None]) -> str:
    """One step's state from its jobs' (a per-page step has many)."""
    if all(s is JobState.SUCCEEDED for s in states):
        return "succeeded"
    if any(s in (JobState.FAILED, JobState.DEAD) for s in states):
        return "failed"
    if any(s in (JobState.RUNNING, JobState.RETRYING, JobState.SUCCEEDED) for s in states):
        return "running"
    if JobState.QUEUED in states:
        return "queued"
    if JobState.CANCELLED in states or None in states:
        return "cancelled"
    return "waiting"
