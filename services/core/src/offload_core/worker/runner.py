"""The job runner: the one Celery task body every worker shares.

For each delivered message it claims the job (compare-and-set), holds a lease renewed by the
process's lease keeper (leases.py), hands a `JobContext` to the handler, and records the outcome:

    handler returns            -> succeeded (result written once)
    PermanentJobError          -> failed
    RetryableJobError, crash,  -> retrying: the job waits in the delayed set until its backoff
    soft/hard time limit          ends (the gateway's mover queues it again), or dead when no
                                  attempts are left
    JobCancelled               -> cancelled

The message is acknowledged in every case: no worker holds a message it is not running (Celery
ETA messages are not used). A message for a finished job, for a job that waits for its time, or
for a job another live worker holds, is dropped without running it: if that worker is lost, the
lease reaper queues the job again.

Every thread that runs jobs has its own worker identity (`worker_id()`: host:pid:nonce:slot), so
two runs in one process (the threads pool) are two holders to the claim: a duplicate delivery
finds the job leased by the other thread and is dropped. Where Celery cannot enforce time
limits (threads and solo pools: no child process to kill), the runner does (`own_time_limits`):
the soft limit is raised at the handler's next checkpoint, and at the hard limit the lease
keeper records the outcome and ends that run's I/O, leaving every other run alone.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject, SoftTimeLimitExceeded, TimeLimitExceeded
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from offload_core.errors import JobCancelled, JobError, PermanentJobError, RetryableJobError
from offload_core.jobs import metrics as job_metrics
from offload_core.jobs.backoff import backoff_seconds
from offload_core.jobs.record import Job
from offload_core.jobs.worker_store import TokenUsage, WorkerJobStore, connect_sync
from offload_core.observability.tracing import job_trace_headers, publish_span, record_run_outcome
from offload_core.payloads.errors import PayloadUnavailable
from offload_core.payloads.ref import PayloadRef
from offload_core.payloads.s3 import S3PayloadStore
from offload_core.process_local import PerProcess
from offload_core.queue.messages import build_task_message
from offload_core.queue.routing import TASK_NAMES
from offload_core.settings import Settings
from offload_core.types import JobState, JobType
from offload_core.worker.handler import JobHandler
from offload_core.worker.leases import Lease, LeaseKeeper

log = logging.getLogger("offload.runner")


class RunLost(Exception):
    """Another worker took this run over (our lease lapsed); stop without writing."""


def worker_id() -> str:
    """host:pid:nonce:slot, one per thread that runs jobs. The pid lets a worker on the same host
    tell a dead holder from a live one; the slot keeps the runs of one process's threads apart
    (a thread runs one job at a time, so "the holder is me" still means "my last run is over")."""
    slot = getattr(_thread_slot, "n", None)
    if slot is None:
        slot = _thread_slot.n = next(_slots)
    return f"{_HOST}:{os.getpid()}:{_NONCE}:{slot}"


_NONCE = uuid.uuid4().hex[:8]
_HOST = socket.gethostname()
_thread_slot = threading.local()
_slots = itertools.count(1)


def holder_is_dead_local_process(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdigit():
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
    # Waiting for a capacity slot: the first poll after this, then doubling up to the second.
    CAPACITY_POLL_SECONDS = (0.05, 1.0)

    def __init__(self, store: WorkerJobStore, job: Job, wid: str, payload: bytes, settings: Settings,
                 lease: Lease, soft_deadline: float | None = None) -> None:
        self.job_id = job.id
        self.tenant = job.tenant
        self.attempt = job.attempts
        self.payload = payload
        self.params: dict[str, Any] = job.params
        self.settings = settings
        self._store, self._wid, self._lease = store, wid, lease
        self._soft_deadline = soft_deadline
        self._pending: list[str] = []
        self._last_flush = float("-inf")  # the first token goes out at once: time to first token
        self.usage: TokenUsage | None = None

    def checkpoint(self) -> None:
        if self._lease.cancel_requested.is_set():
            raise JobCancelled()
        if self._lease.lost.is_set():
            raise RunLost()
        if self._soft_deadline is not None and time.monotonic() >= self._soft_deadline:
            self._soft_deadline = None  # raised once, as Celery's own soft limit is
            raise SoftTimeLimitExceeded()

    @contextmanager
    def abortable(self, abort: Callable[[], None]) -> Iterator[None]:
        """While inside, the hard time limit may call `abort` (from another thread) to end this
        run's blocking I/O at once, e.g. by shutting its HTTP connection's socket."""
        self._lease.aborts.append(abort)
        try:
            yield
        finally:
            self._lease.aborts.remove(abort)

    @contextmanager
    def capacity_slot(self, name: str, capacity: int, waiting_message: str) -> Iterator[None]:
        """Hold one of `capacity` slots of `name`, shared by every worker process, while inside.
        Waits (checking cancel and the time limits; one progress event says so) until one is
        free. The slot is renewed with the run's lease and lapses with it when the worker is
        lost, so a dead pod's slots come back by themselves."""
        delay, longest = self.CAPACITY_POLL_SECONDS
        waited = False
        while not self._store.acquire_capacity(name, self.job_id, capacity):
            if not waited:
                waited = True
                job_metrics.capacity_wait(name)
                self.progress(0, 0, waiting_message)
            time.sleep(delay * random.uniform(0.5, 1.0))  # jitter: waiters do not poll in step
            delay = min(longest, delay * 2)
            self.checkpoint()
        self._lease.slots.append(name)
        try:
            yield
        finally:
            self._lease.slots.remove(name)
            self._store.release_capacity(name, self.job_id)

    def results_of(self, job_ids: list[str]) -> list[dict[str, Any] | None]:
        return self._store.results(job_ids)

    def count_usage(self, model: str, prompt: int, completion: int) -> None:
        """Tokens this run used, added to the tenant's counters with its result (once)."""
        self.usage = TokenUsage(model, max(0, prompt), max(0, completion))

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


class WorkerResources:
    """What the runners of one worker process share, made once per process (after the fork):
    the store's Redis connection and the one lease-keeper thread."""

    def __init__(self, settings: Settings) -> None:
        self._store = PerProcess(lambda: WorkerJobStore(connect_sync(settings), settings))
        self._leases = PerProcess(lambda: LeaseKeeper(self.store, max(0.5, settings.lease_seconds / 3)))
        self._payloads = PerProcess(lambda: S3PayloadStore.from_settings(settings) if settings.payload_store == "s3"
                                    else None)

    @property
    def store(self) -> WorkerJobStore:
        return self._store.get()

    @property
    def leases(self) -> LeaseKeeper:
        return self._leases.get()

    def payload_of(self, job: Job) -> bytes:
        """A job's input kept in object storage (its record holds the reference). Raises a
        permanent error when it is missing or altered, a retryable one when the store is away."""
        payloads = self._payloads.get()
        if payloads is None:
            raise PermanentJobError("the job's input is in object storage, and this worker has no S3 settings "
                                    "(OFFLOAD_PAYLOAD_STORE=s3)", error_type="PayloadStoreMissing")
        try:
            ref = PayloadRef.from_json(job.payload_ref or "")
        except ValueError:
            raise PermanentJobError("the job's input reference is not valid", error_type="PayloadMissing") from None
        return payloads.get(ref)

    def drop_payload(self, job: Job) -> None:
        """Delete a finished job's input from object storage (a failure leaves it to the bucket's
        lifecycle rule)."""
        payloads = self._payloads.get()
        if payloads is None or not job.payload_ref:
            return
        try:
            payloads.delete(PayloadRef.from_json(job.payload_ref))
        except (PayloadUnavailable, ValueError) as exc:
            log.warning("job %s: its input could not be deleted from object storage (%s)", job.id, exc)


class JobRunner:
    """Runs one job type's jobs inside a Celery worker process."""

    def __init__(self, app: Celery, job_type: JobType, handler: JobHandler, settings: Settings,
                 resources: WorkerResources | None = None, *, own_time_limits: bool = False) -> None:
        """`own_time_limits`: enforce the soft and hard time limits here (the threads and solo
        pools, where Celery does not)."""
        self.app, self.job_type, self.handler, self.settings = app, job_type, handler, settings
        self.resources = resources or WorkerResources(settings)
        self.own_time_limits = own_time_limits

    @property
    def store(self) -> WorkerJobStore:
        return self.resources.store

    @property
    def leases(self) -> LeaseKeeper:
        return self.resources.leases

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
                       soft_time_limit=soft, time_limit=hard)
        def run_job(task: Task, job_id: str, tenant: str | None = None) -> None:
            runner.run(job_id, tenant)

        return run_job

    # -- the run ---------------------------------------------------------------------------

    def run(self, job_id: str, tenant: str | None = None) -> None:
        """Run one delivery (`tenant` comes with the message, for the log). When Redis fails
        mid-way, the message is handed back (Reject with requeue) rather than acknowledged:
        Celery acknowledges a task that raised, and a job whose claim or outcome was never
        recorded would then wait for the lease reaper or the lost-message sweep."""
        try:
            self._run(job_id, tenant)
        except (RedisError, OSError, OperationalError) as exc:
            log.error("job %s: store unavailable (%s); the message will be redelivered", job_id, exc)
            raise Reject(exc, requeue=True) from exc

    def _run(self, job_id: str, tenant: str | None) -> None:
        store, wid = self.store, worker_id()
        claim = store.claim(job_id, wid, self.job_type)
        if claim.status == "leased" and claim.holder and holder_is_dead_local_process(claim.holder):
            claim = store.claim(job_id, wid, self.job_type, replace_holder=claim.holder)
        if claim.status == "missing":
            # No record: deleted by hand, or a store that lost data. Nothing can run; take the id
            # out of the indexes so quota reconciliation counts only jobs that exist.
            log.warning("job %s (tenant %s) has no record; its message is dropped", job_id, tenant or "?")
            job_metrics.missing_record(self.job_type)
            store.forget(job_id, self.job_type)
            return
        if claim.status != "claimed" or claim.job is None:
            log.info("job %s not run: %s %s", job_id, claim.status,
                     claim.holder if claim.status == "leased" else claim.state or "")
            return
        job = claim.job
        if claim.intent == "lost":  # its previous run was lost on the last attempt: a poison job
            self._finish(store, job, wid, JobState.DEAD, error=RetryableJobError(
                "the worker running this job was lost on every attempt", error_type="WorkerLost").as_record())
        elif claim.intent == "cancel":
            self._finish(store, job, wid, JobState.CANCELLED)
        else:
            self._execute(store, job, wid, claim.payload)

    def _execute(self, store: WorkerJobStore, job: Job, wid: str, payload: bytes | None) -> None:
        # An inline input came back with the claim (one round trip fewer per job); one in object
        # storage is fetched under the lease, like any other work of the run. None: it is gone.
        if payload is None and not job.payload_ref:
            self._finish(store, job, wid, JobState.FAILED, error=PermanentJobError(
                "the job's input is no longer stored", error_type="PayloadExpired").as_record())
            return
        soft, hard = self.settings.time_limits(self.job_type)
        lease = self.leases.hold(
            job.id, job.type, wid, hard_limit=hard if self.own_time_limits else None,
            on_hard_limit=lambda lease: self._hard_limit_reached(store, job, wid, hard, lease))
        try:
            if payload is None:
                payload = self.resources.payload_of(job)
            ctx = _Context(store, job, wid, payload, self.settings, lease,
                           soft_deadline=time.monotonic() + soft if self.own_time_limits else None)
            result = self.handler(ctx)
            ctx.flush()
        except BaseException as exc:  # noqa: BLE001 - every way out is recorded (or handed back) below
            if lease.lost.is_set() and isinstance(exc, Exception):
                # Another worker took the run over, or the hard time limit ended it and recorded
                # its outcome: whatever this run raised on its way out is not news.
                log.warning("job %s: this run stopped without writing (%s)", job.id,
                            "lease lost to another worker" if not lease.timed_out else "hard time limit")
                return
            self._record_failure(store, job, wid, exc, soft)
        else:
            if lease.lost.is_set():
                log.warning("job %s: a result came after the run was taken away; not recorded", job.id)
                return
            self._finish(store, job, wid, JobState.SUCCEEDED, result=result, tokens=ctx.usage)
        finally:
            self.leases.release(lease)

    def _record_failure(self, store: WorkerJobStore, job: Job, wid: str, exc: BaseException, soft: int) -> None:
        if isinstance(exc, JobCancelled):
            self._finish(store, job, wid, JobState.CANCELLED)
        elif isinstance(exc, RunLost):
            log.warning("job %s: lease lost to another worker; this run stops without writing", job.id)
        elif isinstance(exc, PermanentJobError):
            self._finish(store, job, wid, JobState.FAILED, error=exc.as_record())
        elif isinstance(exc, RetryableJobError):
            self._retry_or_die(store, job, wid, exc)
        elif isinstance(exc, SoftTimeLimitExceeded):
            self._retry_or_die(store, job, wid, RetryableJobError(
                f"the job ran longer than its time limit of {soft} s", error_type="TimeLimitExceeded"))
        elif isinstance(exc, JobError):  # a JobError subclass that chose neither side
            self._finish(store, job, wid, JobState.FAILED, error=exc.as_record())
        elif isinstance(exc, (RedisError, OSError)) or not isinstance(exc, Exception):
            # The store itself failed: nothing can be recorded now. `run` hands the message
            # back so it is delivered again once Redis is back. (And a BaseException, such as
            # Celery's own hard limit in prefork, is not ours to catch.)
            raise exc
        else:  # a bug or an unexpected library error: never crash the worker
            log.error("job %s: unexpected error", job.id, exc_info=exc)
            self._retry_or_die(store, job, wid, RetryableJobError(
                f"internal error ({type(exc).__name__})", error_type="InternalError"))

    def _hard_limit_reached(self, store: WorkerJobStore, job: Job, wid: str, hard: int, lease: Lease) -> None:
        """From the lease keeper's thread, at the run's hard deadline: record the outcome (the
        compare-and-set keeps it once, whoever gets there first), then end the run's I/O. The
        run's own thread then finds its lease lost and writes nothing more."""
        lease.timed_out = True
        lease.lost.set()
        # This thread has no span of the run: the retry's message carries the job's trace.
        self._retry_or_die(store, job, wid, RetryableJobError(
            f"the job was stopped at its hard time limit of {hard} s", error_type="TimeLimitExceeded"),
            trace_headers=job_trace_headers(job.trace_id))
        lease.abort()

    def _finish(self, store: WorkerJobStore, job: Job, wid: str, state: JobState, *,
                result: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
                tokens: TokenUsage | None = None) -> None:
        if store.finish(job, wid, state, result=result, error=error, tokens=tokens):
            record_run_outcome(state.value, job.attempts, (error or {}).get("type"))
            if tokens is not None:
                job_metrics.llm_tokens(job.tenant, tokens.model, tokens.prompt, tokens.completion,
                                       max_tenants=self.settings.llm_usage_metric_tenants)
            if state in (JobState.SUCCEEDED, JobState.CANCELLED):  # failed and dead keep it, to be requeued
                self.resources.drop_payload(job)
            # With the lines above, one line per delivery says what became of it; Celery's own
            # "received" and "succeeded in" lines are off in workers (worker.main).
            run_ms = (time.time() - job.started_at) * 1000 if job.started_at else 0.0
            why = f": {error['type']}: {error['message']}" if error else ""
            log.info("job %s %s in %.1f ms (attempt %d)%s", job.id, state.value, run_ms, job.attempts, why)
        else:
            log.warning("job %s: outcome %s not recorded, the run belongs to another worker", job.id, state.value)

    def _retry_or_die(self, store: WorkerJobStore, job: Job, wid: str, exc: RetryableJobError, *,
                      trace_headers: dict[str, str] | None = None) -> None:
        if job.attempts >= job.max_attempts:
            self._finish(store, job, wid, JobState.DEAD, error=exc.as_record())
            return
        delay = backoff_seconds(self.settings, job.attempts, exc.retry_after)
        tag = str(uuid.uuid4())
        with publish_span(TASK_NAMES[job.type], job.queue, job.id) as headers:
            # The message that runs the next attempt, kept with the job until its backoff ends;
            # it carries this run's trace (or, from the parent after a hard time limit, the job's).
            message = build_task_message(self.app, job_id=job.id, job_type=job.type, queue=job.queue,
                                         tenant=job.tenant, headers=trace_headers or headers, delivery_tag=tag)
        if store.finish(job, wid, JobState.RETRYING, error=exc.as_record(), retry_at=time.time() + delay,
                        message=message, message_tag=tag):
            record_run_outcome(JobState.RETRYING.value, job.attempts, exc.error_type)
            log.info("job %s retrying in %.1f s (attempt %d of %d): %s: %s", job.id, delay, job.attempts,
                     job.max_attempts, exc.error_type, exc.message)

    def on_hard_time_limit(self, job_id: str, hard: int) -> None:
        """Parent-side bookkeeping after a child was killed for running past the hard limit."""
        store = self.store
        job = store.get(job_id)
        if job is None or job.state is not JobState.RUNNING or not job.worker:
            return
        exc = RetryableJobError(f"the job was stopped at its hard time limit of {hard} s",
                                error_type="TimeLimitExceeded")
        # The killed run's span never ended, and this process has no tracer: the retry's
        # message carries the job's trace id, so its next run is in the job's trace.
        self._retry_or_die(store, job, job.worker, exc, trace_headers=job_trace_headers(job.trace_id))
