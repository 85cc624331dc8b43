"""The batch coordinator: a gateway maintenance task (one replica per tick, under a Redis lock)
that moves every running batch forward. Each tick, for each batch not yet ended:

1. **Collect.** Line jobs that ended are in the batch's done set (finish.lua adds them in the
   same step as their end). Each becomes its output line (succeeded) or error line (failed,
   dead), in OpenAI's format, in the batch's output or error hash, keyed by line number; it
   leaves the in-flight set. Idempotent, so a crash half-way costs a second look, not a line.
2. **Stop early.** A batch past its completion window turns `finalizing` (headed for `expired`);
   a cancelled one is `cancelling`. Their unfinished line jobs are cancelled (queued ones at once,
   running ones at their next checkpoint); nothing more is fed.
3. **Feed.** A tenant has at most OFFLOAD_BATCH_MAX_IN_FLIGHT_PER_TENANT line jobs unfinished
   across its batches (oldest batch first). The next lines are read from the input file in a
   window from the batch's cursor and submitted as ordinary jobs of the tenant at the batch's
   priority (`metadata.priority`, default `low`), each with the Idempotency-Key
   `batch:<batch id>:<line>`: a coordinator that dies between a submit and moving the cursor
   submits the line again and gets the same job back. Lines spend neither the tenant's rate nor
   its tokens per minute (the batch was one request), but count in its unfinished-job and byte
   quotas: a refusal leaves the line for a later tick.
4. **End.** A batch whose lines are all fed and collected (or a stopping one whose in-flight
   lines are all collected) gets its output and error files (`purpose: batch_output`, lines
   ordered by line number), its final status, and its webhook (metadata.callback_url).

Bounds: the active batches are at most tenants x OFFLOAD_BATCH_MAX_ACTIVE_PER_TENANT; per batch
and tick, at most COLLECT_PER_TICK collected lines, one read window, and the tenant's free
in-flight slots fed. Redis holds a running batch's in-flight and done sets (at most the
tenant's in-flight limit each) and its output and error lines until it ends, when they become
files. At 10 million jobs nothing here grows: the coordinator touches running batches only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from offload_core.batches.lines import ENDPOINTS, LineError, is_blank, output_line, parse_line, split_lines
from offload_core.batches.record import FIELDS, BatchRecord
from offload_core.batches.store import END, LINE_DONE, BatchStore
from offload_core.files.record import OUTPUT_PURPOSE, FileRecord
from offload_core.files.store import new_file_id
from offload_core.jobs import keys
from offload_core.jobs.record import as_text
from offload_core.jobs.store import NewJob
from offload_core.payloads.errors import PayloadMissing, PayloadUnavailable
from offload_core.types import TERMINAL_STATES, JobState, Priority

log = logging.getLogger("offload.batches")

COLLECT_PER_TICK = 1000  # ended line jobs collected per batch and tick
WINDOW_BYTES = 256 * 1024  # bytes of the input file read per batch and tick (more for one long line)
PAGE_LINES = 1000  # lines per round trip while writing output files
END_LOCK_MS = 10 * 60 * 1000  # the most writing one batch's files may take
EXPIRED_ERROR = {"code": "batch_expired",
                 "message": "This request could not be executed before the completion window expired."}

BATCH_LINES_FED = Counter("offload_batch_lines_fed_total", "Batch lines submitted as jobs", ["endpoint"])
BATCH_LINES_FINISHED = Counter("offload_batch_lines_finished_total", "Batch lines collected when their job ended",
                               ["endpoint", "outcome"])  # succeeded | failed | cancelled
BATCHES_FINISHED = Counter("offload_batches_finished_total", "Batches that ended", ["status"])


@dataclass
class TickReport:
    batches: int = 0
    collected: int = 0
    fed: int = 0
    ended: list[str] | None = None


class BatchCoordinator:
    def __init__(self, batches: BatchStore) -> None:
        self.batches, self.jobs, self.files = batches, batches.jobs, batches.files
        self.redis, self.settings = batches.redis, batches.settings
        self._line_done = LINE_DONE.register(self.redis)
        self._end = END.register(self.redis)

    async def tick(self, now: float | None = None) -> TickReport:
        now = time.time() if now is None else now
        report = TickReport(ended=[])
        ids = [as_text(i) for i in await self.redis.smembers(keys.BATCHES)]
        if not ids:
            return report
        pipe = self.redis.pipeline(transaction=False)
        for batch_id in ids:
            pipe.hmget(keys.batch(batch_id), FIELDS)
        found = [BatchRecord.from_values(v) for v in await pipe.execute()]
        batches = sorted((b for b in found if b is not None), key=lambda b: b.created_at)
        report.batches = len(batches)
        for batch in batches:
            report.collected += await self._collect(batch)
        # In flight per tenant, across its batches, after collecting.
        pipe = self.redis.pipeline(transaction=False)
        for batch in batches:
            pipe.scard(keys.batch_inflight(batch.id))
            pipe.scard(keys.batch_done(batch.id))
        counts = await pipe.execute()
        in_flight: dict[str, int] = defaultdict(int)
        waiting: dict[str, tuple[int, int]] = {}
        for i, batch in enumerate(batches):
            waiting[batch.id] = (counts[2 * i], counts[2 * i + 1])
            in_flight[batch.tenant] += counts[2 * i]
        stalled: set[str] = set()  # tenants whose quota refused a line this tick
        for batch in batches:
            unfinished, uncollected = waiting[batch.id]
            if batch.status == "in_progress" and now >= batch.expires_at:
                batch = await self._stop(batch, "expired", now)
            if batch.status in ("cancelling", "finalizing") and batch.ending:
                await self._cancel_lines(batch)
                if unfinished == 0 and uncollected == 0:
                    await self._finish(batch, batch.ending, now)
                    report.ended.append(batch.id)
                continue
            if batch.status != "in_progress":
                continue
            record = await self.files.get(batch.input_file_id, batch.tenant)
            if record is None:
                await self._stop(batch, "failed", now, errors=[{"code": "input_file_missing", "message":
                                 f"the input file {batch.input_file_id} is gone; the lines fed ran"}])
                continue
            if batch.cursor >= record.bytes:
                if unfinished == 0 and uncollected == 0:
                    await self._finish(batch, "completed", now)
                    report.ended.append(batch.id)
                continue
            free = self.settings.batch_max_in_flight_per_tenant - in_flight[batch.tenant]
            if free <= 0 or batch.tenant in stalled:
                continue
            try:
                fed, refused = await self._feed(batch, record, free)
            except (PayloadMissing, PayloadUnavailable) as exc:
                log.warning("batch %s: its input file could not be read: %s", batch.id, exc)
                if isinstance(exc, PayloadMissing):
                    await self._stop(batch, "failed", now, errors=[{"code": "input_file_missing", "message": str(exc)}])
                continue
            in_flight[batch.tenant] += fed
            report.fed += fed
            if refused:
                stalled.add(batch.tenant)
        return report

    # -- collect -----------------------------------------------------------------------------

    async def _collect(self, batch: BatchRecord) -> int:
        done = [as_text(j) for j in await self.redis.srandmember(keys.batch_done(batch.id), COLLECT_PER_TICK)]
        if not done:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for job_id in done:
            pipe.hmget(keys.job(job_id), "state", "params", "result", "error", "finished_at")
        records = await pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        batch_keys = dict(batch_key=keys.batch(batch.id), done_key=keys.batch_done(batch.id),
                          inflight_key=keys.batch_inflight(batch.id), output_key=keys.batch_output(batch.id),
                          errors_key=keys.batch_errors(batch.id))
        endpoint = batch.endpoint
        for job_id, (state, params, result, error, finished_at) in zip(done, records):
            state = as_text(state) if state is not None else None
            if state is not None and JobState(state) not in TERMINAL_STATES:
                pipe.srem(keys.batch_done(batch.id), job_id)  # requeued by hand since: it comes back when it ends
                continue
            p = json.loads(params) if params else {}
            line, custom_id = str(p.get("line", "0")), str(p.get("custom_id", ""))
            kind, text, outcome = _line_for(job_id, custom_id, endpoint, state, result, error, finished_at,
                                            expired=batch.ending == "expired")
            await self._line_done(via=pipe, **batch_keys, job_id=job_id, line=line, kind=kind, text=text)
            BATCH_LINES_FINISHED.labels(endpoint, outcome).inc()
        await pipe.execute()
        return len(done)

    # -- feed --------------------------------------------------------------------------------

    async def _feed(self, batch: BatchRecord, record: FileRecord, free: int) -> tuple[int, bool]:
        """Submit up to `free` more lines of `batch`; (lines submitted, whether a quota refused one)."""
        s = self.settings
        window = await self._window(record, batch.cursor)
        lines, _ = split_lines(window, at_end=batch.cursor + len(window) >= record.bytes)
        job_type = ENDPOINTS[batch.endpoint]
        priority = Priority(batch.priority)
        # Each line read, in order: (line number, cursor after it, its job, or None: blank or refused).
        planned: list[tuple[int, int, NewJob | None]] = []
        jobs: list[NewJob] = []
        cursor, line_no = batch.cursor, batch.next_line
        refused_lines: list[tuple[int, str]] = []
        for raw in lines:
            cursor += len(raw) + 1
            if is_blank(raw):
                planned.append((line_no, cursor, None))
            else:
                if len(jobs) >= free:
                    break
                try:
                    parsed = parse_line(raw, batch.endpoint, s, batch.tenant)
                except LineError as exc:
                    # Valid at creation, refused now (the settings changed): its error line, no job.
                    refused_lines.append((line_no, output_line(f"refused-{batch.id}-{line_no}", _custom_id(raw), 400,
                                                               _error_body(str(exc), "invalid_request_error"), None)))
                    planned.append((line_no, cursor, None))
                else:
                    jobs.append(NewJob(
                        type=job_type, tenant=batch.tenant, priority=priority, payload=parsed.payload,
                        params={"batch_id": batch.id, "line": line_no, "custom_id": parsed.custom_id,
                                "model": parsed.model},
                        idempotency_key=f"batch:{batch.id}:{line_no}", batch_id=batch.id, counts_rate=False))
                    planned.append((line_no, cursor, jobs[-1]))
            line_no += 1
        cursor = min(cursor, record.bytes)
        outcomes = iter(await asyncio.gather(*(self.jobs.submit(job) for job in jobs)))
        advanced_to, next_line, fed, refused = batch.cursor, batch.next_line, 0, False
        pipe = self.redis.pipeline(transaction=False)
        for n, after, job in planned:
            if job is not None:
                outcome = next(outcomes)
                if outcome.status in ("created", "existing", "conflict") and outcome.job_id:
                    pipe.sadd(keys.batch_inflight(batch.id), outcome.job_id)
                    if not refused:
                        fed += 1
                        BATCH_LINES_FED.labels(batch.endpoint).inc()
                else:
                    refused = True  # a quota: this line and the ones after it wait for a later tick
            if not refused:
                advanced_to, next_line = after, n + 1
        for n, text in refused_lines:
            if n < next_line:
                pipe.hset(keys.batch_errors(batch.id), str(n), text)
        pipe.hset(keys.batch(batch.id), mapping={"cursor": advanced_to, "next_line": next_line, "fed": batch.fed + fed})
        await pipe.execute()
        return fed, refused

    async def _window(self, record: FileRecord, start: int) -> bytes:
        """The bytes from `start` holding at least one whole line (a long line: up to the most
        a request may be, plus its newline)."""
        window = await self.files.read_range(record, start, WINDOW_BYTES)
        if b"\n" in window or start + len(window) >= record.bytes:
            return window
        return await self.files.read_range(record, start, self.settings.max_json_body_bytes + 1)

    # -- stop and end ------------------------------------------------------------------------

    async def _stop(self, batch: BatchRecord, ending: str, now: float,
                    errors: list[dict[str, Any]] | None = None) -> BatchRecord:
        """Head for an early end: nothing more is fed, unfinished lines are cancelled."""
        fields: dict[str, Any] = {"status": "finalizing", "finalizing_at": repr(now), "ending": ending}
        if errors:
            fields["errors"] = json.dumps(errors, separators=(",", ":"))
        await self.redis.hset(keys.batch(batch.id), mapping=fields)
        batch.status, batch.ending, batch.times["finalizing_at"] = "finalizing", ending, now
        batch.errors = errors or batch.errors
        log.info("batch %s: stopping early, to end %s", batch.id, ending)
        return batch

    async def _cancel_lines(self, batch: BatchRecord) -> None:
        ids = [as_text(j) for j in await self.redis.smembers(keys.batch_inflight(batch.id))]
        if not ids:
            return
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(keys.job(job_id), "state", "cancel_requested")
        for job_id, (state, asked) in zip(ids, await pipe.execute()):
            if state is None:
                await self.redis.srem(keys.batch_inflight(batch.id), job_id)
            elif JobState(as_text(state)) not in TERMINAL_STATES and as_text(asked or b"") != "1":
                await self.jobs.cancel(job_id, batch.tenant)

    async def _finish(self, batch: BatchRecord, status: str, now: float) -> None:
        # Writing the files of a large batch can outlast the tick's lock: a lock of its own keeps
        # a second replica from writing them at the same time.
        if not await self.redis.set(keys.lock(f"batch-end:{batch.id}"), "1", nx=True, px=END_LOCK_MS):
            return
        if batch.status != "finalizing":
            await self.redis.hset(keys.batch(batch.id), mapping={"status": "finalizing", "finalizing_at": repr(now)})
        if status == "expired":
            await self._expire_unfed(batch)
        output_id = await self._reserve(batch, "output_file_pending")
        error_id = await self._reserve(batch, "error_file_pending")
        pipe = self.redis.pipeline(transaction=False)
        pipe.hlen(keys.batch_output(batch.id))
        pipe.hlen(keys.batch_errors(batch.id))
        pipe.hget(keys.batch(batch.id), "next_line")
        completed, failed, next_line = await pipe.execute()
        last_line = int(next_line or 1) - 1
        output = await self.files.create_from_chunks(
            batch.tenant, f"{batch.id}_output.jsonl", OUTPUT_PURPOSE,
            self._lines(keys.batch_output(batch.id), last_line), file_id=output_id) if completed else None
        errors = await self.files.create_from_chunks(
            batch.tenant, f"{batch.id}_error.jsonl", OUTPUT_PURPOSE,
            self._lines(keys.batch_errors(batch.id), last_line), file_id=error_id) if failed else None
        ended = await self._end(
            batch_key=keys.batch(batch.id), batches_key=keys.BATCHES, usage_key=keys.tenant_usage(batch.tenant),
            file_key=keys.file(batch.input_file_id), done_key=keys.batch_done(batch.id),
            inflight_key=keys.batch_inflight(batch.id), output_key=keys.batch_output(batch.id),
            errors_key=keys.batch_errors(batch.id), webhooks_key=keys.WEBHOOKS, batch_id=batch.id, status=status,
            now=repr(time.time()), output_file_id=output.id if output else "", error_file_id=errors.id if errors else "",
            completed=completed, failed=failed, retention=self.settings.file_retention_seconds)
        if as_text(ended) == "ended":
            BATCHES_FINISHED.labels(status).inc()
            log.info("batch %s %s: %d lines succeeded, %d failed", batch.id, status, completed, failed)

    async def _reserve(self, batch: BatchRecord, field: str) -> str:
        """The id the batch's output (or error) file gets, chosen once: a second try after a crash
        writes the same file, never a second one."""
        await self.redis.hsetnx(keys.batch(batch.id), field, new_file_id())
        return as_text(await self.redis.hget(keys.batch(batch.id), field))

    async def _lines(self, key: str, last_line: int) -> AsyncIterator[bytes]:
        """The hash's lines in line order, as JSONL chunks of up to PAGE_LINES lines."""
        for start in range(1, last_line + 1, PAGE_LINES):
            numbers = [str(n) for n in range(start, min(last_line, start + PAGE_LINES - 1) + 1)]
            values = [v for v in await self.redis.hmget(key, numbers) if v is not None]
            if values:
                yield b"".join((v if isinstance(v, bytes) else v.encode()) + b"\n" for v in values)

    async def _expire_unfed(self, batch: BatchRecord) -> None:
        """Error lines `batch_expired` for the lines never fed (read from the input file)."""
        record = await self.files.get(batch.input_file_id, batch.tenant)
        fields = await self.redis.hmget(keys.batch(batch.id), "cursor", "next_line")
        cursor, line_no = int(fields[0] or 0), int(fields[1] or 1)
        while record is not None and cursor < record.bytes:
            window = await self._window(record, cursor)
            lines, used = split_lines(window, at_end=cursor + len(window) >= record.bytes)
            if not lines:
                break
            pipe = self.redis.pipeline(transaction=False)
            for raw in lines:
                if not is_blank(raw):
                    pipe.hset(keys.batch_errors(batch.id), str(line_no),
                              output_line(f"expired-{batch.id}-{line_no}", _custom_id(raw), None, None, EXPIRED_ERROR))
                line_no += 1
            cursor += used
            pipe.hset(keys.batch(batch.id), mapping={"cursor": cursor, "next_line": line_no})
            await pipe.execute()


def _custom_id(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("custom_id", ""))
    except (ValueError, AttributeError):
        return ""


def _error_body(message: str, error_type: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": None}}


def _line_for(job_id: str, custom_id: str, endpoint: str, state: str | None, result: bytes | None,
              error: bytes | None, finished_at: bytes | None, *, expired: bool) -> tuple[str, str, str]:
    """(kind for the collect script, the line, the metric's outcome) of an ended line job."""
    if state == JobState.SUCCEEDED.value and result:
        body = json.loads(result)
        if ENDPOINTS[endpoint].value == "llm":
            body = chat_completion(job_id, body, float(finished_at or 0))
        return "output", output_line(job_id, custom_id, 200, body, None), "succeeded"
    if state == JobState.CANCELLED.value or state is None:
        if expired:
            return "error", output_line(job_id, custom_id, None, None, EXPIRED_ERROR), "cancelled"
        return "none", "", "cancelled"
    err = json.loads(error) if error else {}
    status_code = 400 if state == JobState.FAILED.value else 500
    body = _error_body(str(err.get("message", "the request failed")),
                       "invalid_request_error" if status_code == 400 else "server_error")
    body["error"]["code"] = err.get("type")
    return "error", output_line(job_id, custom_id, status_code, body, None), "failed"


def chat_completion(job_id: str, result: dict[str, Any], created: float) -> dict[str, Any]:
    """An LLM job's result as OpenAI's `chat.completion` object."""
    usage = result.get("usage") or {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    total = usage.get("total_tokens")
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return {"id": f"chatcmpl-{job_id.replace('-', '')}", "object": "chat.completion", "created": int(created),
            "model": result.get("model"), "choices": [{
                "index": 0, "message": {"role": "assistant", "content": result.get("text", "")},
                "finish_reason": result.get("finish_reason"), "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}}
