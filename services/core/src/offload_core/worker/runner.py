"""The job runner: the one Celery task body both workers share.

For each delivered message it claims the job (compare-and-set), holds a lease renewed by the
process's lease keeper (leases.py), hands a `JobContext` to the handler, and records the outcome:

    handler returns            -> succeeded (result written once)
    PermanentJobError          -> failed
    RetryableJobError, crash,  -> retrying + a delayed message (backoff with jitter),
    soft/hard time limit          or dead when no attempts are left
    JobCancelled               -> cancelled

A message for a finished job, or for a job another live worker holds, is acknowledged without
running it (the latter is re-checked after the lease would expire, in case that worker dies).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject, SoftTimeLimitExceeded, TimeLimitExceeded
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from offload_core.errors import JobCancelled, JobError, PermanentJobError, RetryableJobError
from offload_core.jobs.backoff import backoff_seconds
from offload_core.jobs.record import Job
from offload_core.jobs.worker_store import WorkerJobStore, connect_sync
from offload_core.observability.tracing import job_trace_headers, record_run_outcome
from offload_core.process_local import PerProcess
from offload_core.queue.routing import TASK_NAMES, WEBHOOK_TASK, queue_name
from offload_core.settings import Settings
from offload_core.types import JobState, JobType
from offload_core.worker.handler import JobHandler
from offload_core.worker.leases import Lease, LeaseKeeper

log = logging.getLogger("offload.runner")


class RunLost(Exception):
    """Another worker took this run over (our lease lapsed); stop without writing."""


def worker_id() -> str:
    """host:pid:nonce. The pid lets a worker on the same host tell a dead holder from a live one."""
    return f"{socket.gethostname()}:{os.getpid()}:{_NONCE}"


_NONCE = uuid.uuid4().hex[:8]


def holder_is_dead_local_process(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class _Context:
    """The JobContext a handler sees (offload_core.worker.handler)."""

    TOKEN_FLUSH_SECONDS = 0.05

    def __init__(self, store: WorkerJobStore, job: Job, wid: str, payload: bytes, settings: Settings,
                 lease: Lease) -> None:
        self.job_id = job.id
        self.tenant = job.tenant
        self.attempt = job.attempts
        self.payload = payload
        self.params: dict[str, Any] = job.params
        self.settings = settings
        self._store, self._wid, self._lease = store, wid, lease
        self._pending: list[str] = []
        self._last_flush = float("-inf")  # the first token goes out at once: time to first token

    def checkpoint(self) -> None:
        if self._lease.cancel_requested.is_set():
            raise JobCancelled()
        if self._lease.lost.is_set():
            raise RunLost()

    def _react(self, flag: int) -> None:
        if flag == 1:
            raise JobCancelled()
        if flag == -1:
            raise RunLost()

    def progress(self, current: int, total: int, message: str = "") -> None:
        self._react(self._store.progress(self.job_id, self._wid, current, total, message))
        self.checkpoint()

    def tokens(self, text: str) -> None:
        if text:
            self._pending.append(text)
        # Batch token events after the first: one Redis round trip per ~50 ms, not one per token.
        if time.monotonic() - self._last_flush >= self.TOKEN_FLUSH_SECONDS:
            self.flush()
        self.checkpoint()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._pending:
            texts, self._pending = ["".join(self._pending)], []
            self._react(self._store.tokens(self.job_id, self._wid, texts))


class JobRunner:
    """Runs one job type's jobs inside a Celery worker process."""

    def __init__(self, app: Celery, job_type: JobType, handler: JobHandler, settings: Settings) -> None:
        self.app, self.job_type, self.handler, self.settings = app, job_type, handler, settings
        self._store = PerProcess(lambda: WorkerJobStore(connect_sync(settings), settings))
        self._leases = PerProcess(lambda: LeaseKeeper(self.store, max(0.5, settings.lease_seconds / 3)))

    @property
    def store(self) -> WorkerJobStore:
        return self._store.get()

    def register(self) -> Task:
        runner = self
        soft, hard = self.settings.time_limits(self.job_type)

        class JobTask(Task):
            def on_failure(self, exc, task_id, args, kwargs, einfo):  # noqa: D401 - Celery hook
                # Runs in the parent process when a child was killed for the hard time limit:
                # the child could not record anything, so record it here.
                if isinstance(exc, TimeLimitExceeded) and args:
                    runner.on_hard_time_limit(args[0], hard)

        @self.app.task(name=TASK_NAMES[self.job_type], bind=True, base=JobTask, acks_late=True,
                       max_retries=None, soft_time_limit=soft, time_limit=hard)
        def run_job(task: Task, job_id: str, tenant: str | None = None) -> None:
            # `tenant` is absent from messages queued before it was added.
            runner.run(task, job_id, tenant)

        return run_job

    # -- the run ---------------------------------------------------------------------------

    def run(self, task: Task, job_id: str, tenant: str | None = None) -> None:
        """Run one delivery. When Redis fails mid-way, the message is handed back (Reject with
        requeue) rather than acknowledged: Celery acknowledges a task that raised, and a job
        whose claim or outcome was never recorded would then wait forever for a message
        that no longer exists."""
        try:
            self._run(task, job_id, tenant)
        except Reject as exc:
            if exc.requeue:
                raise
            # Celery's `task.retry` turns a failure to publish the retry into Reject(requeue=False),
            # which would drop the only message of a job already recorded as `retrying`.
            log.error("job %s: the retry could not be queued (%s); the message will be redelivered", job_id, exc.reason)
            raise Reject(exc.reason, requeue=True) from exc
        except (RedisError, OSError, OperationalError) as exc:
            log.error("job %s: store unavailable (%s); the message will be redelivered", job_id, exc)
            raise Reject(exc, requeue=True) from exc

    def _run(self, task: Task, job_id: str, tenant: str | None) -> None:
        store, wid = self.store, worker_id()
        claim = store.claim(job_id, wid, tenant=tenant)
        if claim.status == "leased" and claim.holder and holder_is_dead_local_process(claim.holder):
            claim = store.claim(job_id, wid, tenant=tenant, replace_holder=claim.holder)
        if claim.status == "leased":
            # Another worker holds it. Look again once its lease would have lapsed: if that
            # worker died, this message is what brings the job back.
            log.info("job %s is held by %s; checking again later", job_id, claim.holder)
            raise task.retry(countdown=claim.lease_ms_left / 1000 + 1, max_retries=None)
        if claim.status != "claimed" or claim.job is None:
            log.info("job %s not run: %s %s", job_id, claim.status, claim.state or "")
            if claim.status in ("dead", "cancelled"):  # this claim is what ended the job
                self._after_terminal(job_id)
            return
        job = claim.job
        self._execute(task, store, job, wid, claim.payload)

    def _execute(self, task: Task, store: WorkerJobStore, job: Job, wid: str, payload: bytes | None) -> None:
        # `payload` came back with the claim (one round trip fewer per job); None: it expired.
        if payload is None:
            self._finish(store, job, wid, JobState.FAILED, error=PermanentJobError(
                "the job's input expired before it could run", error_type="PayloadExpired").as_record())
            return
        lease = self._leases.get().hold(job.id, wid)
        ctx = _Context(store, job, wid, payload, self.settings, lease)
        try:
            result = self.handler(ctx)
            ctx.flush()
        except JobCancelled:
            self._finish(store, job, wid, JobState.CANCELLED)
        except RunLost:
            log.warning("job %s: lease lost to another worker; this run stops without writing", job.id)
        except PermanentJobError as exc:
            self._finish(store, job, wid, JobState.FAILED, error=exc.as_record())
        except RetryableJobError as exc:
            self._retry_or_die(task, store, job, wid, exc)
        except SoftTimeLimitExceeded:
            soft, _ = self.settings.time_limits(self.job_type)
            self._retry_or_die(task, store, job, wid, RetryableJobError(
                f"the job ran longer than its time limit of {soft} s", error_type="TimeLimitExceeded"))
        except JobError as exc:  # a JobError subclass that chose neither side
            self._finish(store, job, wid, JobState.FAILED, error=exc.as_record())
        except (RedisError, OSError):
            # The store itself failed: nothing can be recorded now. `run` hands the message
            # back so it is delivered again once Redis is back.
            raise
        except Exception as exc:  # a bug or an unexpected library error: never crash the worker
            log.exception("job %s: unexpected error", job.id)
            self._retry_or_die(task, store, job, wid, RetryableJobError(
                f"internal error ({type(exc).__name__})", error_type="InternalError"))
        else:
            self._finish(store, job, wid, JobState.SUCCEEDED, result=result)
        finally:
            self._leases.get().release(lease)

    def _finish(self, store: WorkerJobStore, job: Job, wid: str, state: JobState, *,
                result: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> None:
        if store.finish(job, wid, state, result=result, error=error):
            record_run_outcome(state.value, job.attempts, (error or {}).get("type"))
            # With the lines above, one line per delivery says what became of it; Celery's own
            # "received" and "succeeded in" lines are off in workers (worker_main).
            run_ms = (time.time() - job.started_at) * 1000 if job.started_at else 0.0
            log.info("job %s %s in %.1f ms (attempt %d)", job.id, state.value, run_ms, job.attempts)
            if job.callback_url:  # set at submit, never changed: no need to read the record again
                self._after_terminal(job.id)
        else:
            log.warning("job %s: outcome %s not recorded, the run belongs to another worker", job.id, state.value)

    def _retry_or_die(self, task: Task, store: WorkerJobStore, job: Job, wid: str, exc: RetryableJobError) -> None:
        if job.attempts >= job.max_attempts:
            self._finish(store, job, wid, JobState.DEAD, error=exc.as_record())
            return
        delay = backoff_seconds(self.settings, job.attempts, exc.retry_after)
        if store.finish(job, wid, JobState.RETRYING, error=exc.as_record(), retry_at=time.time() + delay):
            record_run_outcome(JobState.RETRYING.value, job.attempts, exc.error_type)
            log.info("job %s retrying in %.1f s (attempt %d of %d): %s", job.id, delay, job.attempts,
                     job.max_attempts, exc.message)
            raise task.retry(countdown=delay, max_retries=None)

    def on_hard_time_limit(self, job_id: str, hard: int) -> None:
        """Parent-side bookkeeping after a child was killed for running past the hard limit."""
        store = self.store
        job = store.get(job_id)
        if job is None or job.state is not JobState.RUNNING or not job.worker:
            return
        exc = RetryableJobError(f"the job was stopped at its hard time limit of {hard} s",
                                error_type="TimeLimitExceeded")
        if job.attempts >= job.max_attempts:
            self._finish(store, job, job.worker, JobState.DEAD, error=exc.as_record())
            return
        delay = backoff_seconds(self.settings, job.attempts)
        if store.finish(job, job.worker, JobState.RETRYING, error=exc.as_record(), retry_at=time.time() + delay):
            # The killed run's span never ended, and this process has no tracer: the retry's
            # message carries the job's trace id, so its next run is in the job's trace.
            self.app.send_task(TASK_NAMES[self.job_type], args=[job_id, job.tenant], task_id=job_id, countdown=delay,
                               queue=queue_name(self.job_type, job.priority), headers=job_trace_headers(job.trace_id))

    def _after_terminal(self, job_id: str) -> None:
        """Queue the webhook for a job that just finished, if it asked for one."""
        job = self.store.get(job_id)
        if job is None or not job.callback_url or job.state not in (
                JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD, JobState.CANCELLED):
            return
        self.app.send_task(WEBHOOK_TASK, args=[job_id, job.state.value], queue=queue_name(job.type, job.priority))
