"""Webhook delivery: when a job ends, POST its summary to the job's `callback_url`, signed
(offload_core.webhooks.signing).

Delivery is a Celery task on the job's own queue, so it is durable (acks late) and retried with
backoff; it never goes to internal addresses (offload_core.webhooks.urlguard), and redirects
are not followed.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit, urlunsplit

import httpx
from celery import Celery, Task

from offload_core.jobs.backoff import backoff_seconds
from offload_core.jobs.worker_store import WorkerJobStore, connect_sync
from offload_core.process_local import PerProcess
from offload_core.queue.routing import WEBHOOK_TASK
from offload_core.settings import Settings
from offload_core.webhooks.signing import SIGNATURE_HEADER, secret_for, sign
from offload_core.webhooks.urlguard import Allowlist, UrlRefused, resolve_public

log = logging.getLogger("offload.webhooks")


def post_signed(client: httpx.Client, url: str, body: bytes, secret: str, allow: Allowlist) -> tuple[int, str | None]:
    """POST to the address `url` resolves to, after checking it is public: (status, Retry-After)."""
    address = resolve_public(url, allow)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port
    pinned = f"[{address}]" if ":" in address else address
    target = urlunsplit(parts._replace(netloc=f"{pinned}:{port}" if port else pinned))
    headers = {
        "Host": parts.netloc.rpartition("@")[2],
        "Content-Type": "application/json",
        "User-Agent": "offload-webhooks/1",
        SIGNATURE_HEADER: sign(secret, body),
    }
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    response = client.post(target, content=body, headers=headers, extensions=extensions)
    return response.status_code, response.headers.get("retry-after")


def register_webhook_task(app: Celery, settings: Settings) -> Task:
    allow = Allowlist.parse(settings.webhook_allowlist)
    stores = PerProcess(lambda: WorkerJobStore(connect_sync(settings), settings))
    clients = PerProcess(lambda: httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False))

    @app.task(name=WEBHOOK_TASK, bind=True, acks_late=True, max_retries=None, ignore_result=True)
    def deliver_webhook(task: Task, job_id: str, final_state: str) -> None:
        store, client = stores.get(), clients.get()
        job = store.get(job_id)
        if job is None or not job.callback_url:
            return
        attempt = task.request.retries + 1
        secret = secret_for(settings, job.tenant)
        record = {"state": "pending", "attempts": attempt, "last_status": None, "detail": None}
        if secret is None:
            record.update(state="failed", detail="no webhook secret is configured for this tenant")
            store.set_webhook_status(job_id, record)
            log.warning("job %s webhook not sent: %s", job_id, record["detail"])
            return
        summary = job.to_api(status_base_url=settings.status_public_url.rstrip("/"))
        for private in ("webhook", "cancel_requested"):
            summary.pop(private, None)
        body = json.dumps({"event": f"job.{final_state}", "job": summary}, separators=(",", ":")).encode()
        try:
            status, retry_after = post_signed(client, job.callback_url, body, secret, allow)
        except UrlRefused as exc:
            record.update(state="refused", detail=str(exc))
            store.set_webhook_status(job_id, record)
            log.warning("job %s webhook refused: %s", job_id, exc)
            return
        except httpx.HTTPError as exc:
            status, retry_after, detail = None, None, f"{type(exc).__name__}: could not reach the callback URL"
        else:
            detail = None
        record["last_status"] = status
        # One line per delivery attempt, as the runner writes one per job delivery (Celery's
        # own per-task lines are off in workers).
        if status is not None and 200 <= status < 300:
            record.update(state="delivered")
            store.set_webhook_status(job_id, record)
            log.info("job %s webhook delivered (attempt %d, HTTP %d)", job_id, attempt, status)
            return
        retryable = status is None or status == 429 or status >= 500
        if status is not None and 300 <= status < 400:
            detail = f"the callback answered {status}; redirects are not followed"
        elif status is not None:
            detail = f"the callback answered {status}"
        record["detail"] = detail
        if retryable and attempt < settings.webhook_max_attempts:
            asked = float(retry_after) if retry_after and str(retry_after).isdigit() else None
            store.set_webhook_status(job_id, record)
            delay = backoff_seconds(settings, attempt, asked)
            log.info("job %s webhook attempt %d: %s; retrying in %.1f s", job_id, attempt, detail, delay)
            raise task.retry(countdown=delay, max_retries=None)
        record["state"] = "failed"
        store.set_webhook_status(job_id, record)
        log.warning("job %s webhook failed after %d attempts: %s", job_id, attempt, detail)

    return deliver_webhook
