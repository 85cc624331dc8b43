"""Celery task messages, built without a broker connection.

The gateway writes a job's record and its queue message in one Lua script (atomic: a 202 is
never given for a job that is stored but not queued, or queued but not stored). So it cannot
let kombu publish the message; it builds the exact JSON that kombu's Redis transport would
LPUSH, using Celery's own protocol-2 builder. The message goes to the "anonymous exchange"
(exchange "", routing key = queue name), which kombu resolves to the queue itself when it
restores an unacknowledged message after the visibility timeout.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from celery import Celery

from .routing import TASK_NAMES
from .types import JobType


def build_task_message(
    app: Celery,
    *,
    job_id: str,
    job_type: JobType | str,
    queue: str,
    tenant: str,
    headers: dict[str, str] | None = None,
) -> str:
    """The Redis list entry that runs `job_id` on `queue`. The Celery task id is the job id.

    The task's arguments are the job id and its tenant: the worker's claim needs the tenant's
    key, and would otherwise spend a round trip per job reading it from the record.
    """
    name = TASK_NAMES[JobType(job_type)]
    args = (job_id, tenant)
    msg = app.amqp.as_task_v2(
        job_id,
        name,
        args=args,
        kwargs={},
        root_id=job_id,
        argsrepr=repr(args),
        kwargsrepr="{}",
        origin="offload-gateway",
        ignore_result=True,
    )
    msg_headers: dict[str, Any] = dict(msg.headers)
    if headers:
        msg_headers.update(headers)  # trace context (traceparent) rides here
    body = json.dumps(msg.body, separators=(",", ":")).encode()
    properties = dict(msg.properties)
    properties.update(
        body_encoding="base64",
        delivery_mode=2,
        priority=0,
        delivery_tag=str(uuid.uuid4()),
        delivery_info={"exchange": "", "routing_key": queue},
    )
    payload = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": msg_headers,
        "properties": properties,
    }
    return json.dumps(payload, separators=(",", ":"))
