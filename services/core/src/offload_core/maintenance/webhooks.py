"""The webhook outbox's dispatcher: deliveries on their own queue and their own pool.

When a job ends, the script that records its terminal state also puts a delivery in the outbox
(`offload:webhooks`, scored by when it is due): a webhook is written at once with the outcome,
so it is never lost to a crash between the two, and every way a job ends (a worker's outcome, a
cancel through the API, a lost worker's last attempt) sends one. The dispatcher runs in the
gateway: it takes due deliveries (each leased to it, so gateway replicas never send one twice
at once), sends at most `webhook_concurrency` at a time, each within `webhook_timeout_seconds`
in all, and retries with backoff up to `webhook_max_attempts`. A slow receiver therefore holds
one dispatcher slot for at most the timeout, and never a job worker.

The delivery id, `<job id>/<id of its terminal event>`, is the same on every attempt; a job
that is requeued and ends again makes a new one. A batch's end is delivered the same way
(`<batch id>/<final status>`, the batch object as the body, event `batch.<status>`). Delivery is at least once: receivers
deduplicate on `X-Offload-Delivery`. The attempt's outcome is in the job's `webhook` field.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram

from offload_core.batches.record import FIELDS as BATCH_FIELDS
from offload_core.batches.record import BatchRecord
from offload_core.jobs import keys, scripts
from offload_core.jobs.backoff import backoff_seconds
from offload_core.jobs.record import RECORD_FIELDS, Job, as_text, from_fields
from offload_core.settings import Settings
from offload_core.webhooks.delivery import Attempt, body_for, post_signed
from offload_core.webhooks.signing import secret_for
from offload_core.webhooks.urlguard import Allowlist

log = logging.getLogger("offload.webhooks")

TAKE = 50  # deliveries taken per round trip

WEBHOOK_DELIVERIES = Counter("offload_webhook_deliveries_total", "Webhook delivery attempts by outcome",
                             ["outcome"])  # delivered | retry | failed | refused
WEBHOOK_SECONDS = Histogram("offload_webhook_delivery_seconds", "Time one webhook delivery attempt took",
                            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))


class WebhookDispatcher:
    def __init__(self, redis: aioredis.Redis, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.redis, self.settings = redis, settings
        self.allow = Allowlist.parse(settings.webhook_allowlist)
        self.client = client or httpx.AsyncClient(follow_redirects=False, timeout=settings.webhook_timeout_seconds,
                                                  limits=httpx.Limits(max_connections=settings.webhook_concurrency))
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._take = scripts.OUTBOX_TAKE.register(redis)
        self._set_status = scripts.SET_WEBHOOK_STATUS.register(redis)
        self._sending: set[asyncio.Task[None]] = set()

    async def dispatch_due(self) -> int:
        """Start sending every due delivery there is a free slot for. Returns how many started."""
        free = self.settings.webhook_concurrency - len(self._sending)
        if free <= 0:
            return 0
        now = time.time()
        lease_until = now + self.settings.webhook_timeout_seconds + 30
        taken = await self._take(outbox_key=keys.WEBHOOKS, now=repr(now), lease_until=repr(lease_until),
                                 limit=min(TAKE, free))
        for member in map(as_text, taken):
            task = asyncio.create_task(self._send(member))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return len(taken)

    async def drain(self) -> None:
        """Wait for the deliveries in flight (at shutdown, within the timeout)."""
        if self._sending:
            await asyncio.wait(self._sending, timeout=self.settings.webhook_timeout_seconds)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _send(self, delivery_id: str) -> None:
        async with self._slots:
            try:
                await self._deliver(delivery_id)
            except Exception:  # noqa: BLE001 - one delivery's failure must not stop the dispatcher
                log.exception("webhook %s: delivery failed unexpectedly; it is retried when its lease ends",
                              delivery_id)

    async def _deliver(self, delivery_id: str) -> None:
        if delivery_id.startswith("batch_"):
            await self._deliver_batch(delivery_id)
            return
        job_id = delivery_id.partition("/")[0]
        job = from_fields(await self.redis.hmget(keys.job(job_id), RECORD_FIELDS))
        if job is None or not job.callback_url:  # expired meanwhile: nothing left to tell
            await self.redis.zrem(keys.WEBHOOKS, delivery_id)
            return
        attempt_no = (job.webhook or {}).get("attempts", 0) + 1 if (job.webhook or {}).get("delivery_id") == \
            delivery_id else 1
        secret = secret_for(self.settings, job.tenant)
        if secret is None:
            await self._settle(job, delivery_id, attempt_no, "failed",
                               Attempt(False, False, detail="no webhook secret is configured for this tenant"))
            return
        started = time.monotonic()
        attempt = await post_signed(self.client, job.callback_url, body_for(f"job.{job.state.value}", _summary(job,
                                    self.settings)), secret=secret, delivery_id=delivery_id, allow=self.allow,
                                    timeout=self.settings.webhook_timeout_seconds)
        WEBHOOK_SECONDS.observe(time.monotonic() - started)
        if attempt.delivered:
            await self._settle(job, delivery_id, attempt_no, "delivered", attempt)
        elif attempt.retryable and attempt_no < self.settings.webhook_max_attempts:
            delay = backoff_seconds(self.settings, attempt_no, attempt.retry_after)
            await self._record(job, delivery_id, attempt_no, "pending", attempt)
            await self.redis.zadd(keys.WEBHOOKS, {delivery_id: time.time() + delay}, xx=True)
            WEBHOOK_DELIVERIES.labels("retry").inc()
            log.info("job %s webhook attempt %d: %s; retrying in %.1f s", job.id, attempt_no, attempt.detail, delay)
        else:
            await self._settle(job, delivery_id, attempt_no, "refused" if attempt.status is None and not
                               attempt.retryable else "failed", attempt)

    async def _deliver_batch(self, delivery_id: str) -> None:
        """A batch's end (delivery id `<batch id>/<status>`): the batch object, signed the same way,
        to its metadata.callback_url; the delivery's progress is in the batch's `webhook` field."""
        batch_id = delivery_id.partition("/")[0]
        batch = BatchRecord.from_values(await self.redis.hmget(keys.batch(batch_id), BATCH_FIELDS))
        if batch is None or not batch.callback_url:
            await self.redis.zrem(keys.WEBHOOKS, delivery_id)
            return
        previous = batch.webhook or {}
        attempt_no = previous.get("attempts", 0) + 1 if previous.get("delivery_id") == delivery_id else 1
        secret = secret_for(self.settings, batch.tenant)
        if secret is None:
            attempt = Attempt(False, False, detail="no webhook secret is configured for this tenant")
        else:
            body = json.dumps({"event": f"batch.{batch.status}", "batch": batch.to_api()}, separators=(",", ":"))
            started = time.monotonic()
            attempt = await post_signed(self.client, batch.callback_url, body.encode(), secret=secret,
                                        delivery_id=delivery_id, allow=self.allow,
                                        timeout=self.settings.webhook_timeout_seconds)
            WEBHOOK_SECONDS.observe(time.monotonic() - started)
        retry = not attempt.delivered and attempt.retryable and attempt_no < self.settings.webhook_max_attempts
        state = "delivered" if attempt.delivered else "pending" if retry else "failed"
        status = {"state": state, "delivery_id": delivery_id, "attempts": attempt_no,
                  "last_status": attempt.status, "detail": attempt.detail}
        await self._set_status(job_key=keys.batch(batch_id), status_json=json.dumps(status, separators=(",", ":")))
        if retry:
            delay = backoff_seconds(self.settings, attempt_no, attempt.retry_after)
            await self.redis.zadd(keys.WEBHOOKS, {delivery_id: time.time() + delay}, xx=True)
            WEBHOOK_DELIVERIES.labels("retry").inc()
        else:
            await self.redis.zrem(keys.WEBHOOKS, delivery_id)
            WEBHOOK_DELIVERIES.labels(state).inc()
        log.info("batch %s webhook %s (attempt %d%s)", batch_id, state, attempt_no,
                 f", HTTP {attempt.status}" if attempt.status else f": {attempt.detail}" if attempt.detail else "")

    async def _settle(self, job: Job, delivery_id: str, attempt_no: int, state: str, attempt: Attempt) -> None:
        await self._record(job, delivery_id, attempt_no, state, attempt)
        await self.redis.zrem(keys.WEBHOOKS, delivery_id)
        WEBHOOK_DELIVERIES.labels(state).inc()
        level = logging.INFO if state == "delivered" else logging.WARNING
        log.log(level, "job %s webhook %s (attempt %d%s)", job.id, state, attempt_no,
                f", HTTP {attempt.status}" if attempt.status else f": {attempt.detail}" if attempt.detail else "")

    async def _record(self, job: Job, delivery_id: str, attempt_no: int, state: str, attempt: Attempt) -> None:
        status = {"state": state, "delivery_id": delivery_id, "attempts": attempt_no,
                  "last_status": attempt.status, "detail": attempt.detail}
        await self._set_status(job_key=keys.job(job.id), status_json=json.dumps(status, separators=(",", ":")))


def _summary(job: Job, settings: Settings) -> dict[str, Any]:
    summary = job.to_api(status_base_url=settings.status_public_url.rstrip("/"))
    for private in ("webhook", "cancel_requested"):
        summary.pop(private, None)
    return summary
