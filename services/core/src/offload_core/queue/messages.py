"""Celery task messages, built without a broker connection.

The gateway writes a job's record and its queue message in one Lua script (atomic: a 202 is
never given for a job that is stored but not queued, or queued but not stored). So it cannot
let kombu publish the message; it builds the exact JSON that kombu's Redis transport would
LPUSH, from what Celery's own protocol-2 builder (`as_task_v2`) gives for the task. The message
goes to the "anonymous exchange" (exchange "", routing key = queue name), which kombu resolves
to the queue itself when it restores an unacknowledged message after the visibility timeout.

Only the job id, the tenant, the queue, the trace context and the delivery tag change from one
job to the next. Everything else is serialised once per task (`_Template`): serialising the whole
message for every submit was about 5% of the gateway's CPU per request (BENCHMARKS.md, "Fifth round").
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from functools import lru_cache

from celery import Celery

from offload_core.queue.routing import TASK_NAMES
from offload_core.types import JobType

_json = json.JSONEncoder(separators=(",", ":")).encode
_PER_JOB_HEADERS = ("id", "root_id", "argsrepr")
_PER_JOB_PROPERTIES = ("correlation_id", "delivery_tag", "delivery_info")


@dataclass(frozen=True)
class _Template:
    """The JSON of one task's message, cut where the per-job parts go."""

    headers: str  # the fixed headers, without braces: `"lang":"py","task":...`
    properties: str  # the fixed properties, without braces
    embed: str  # the body's third part (callbacks, chain, ...): `{"callbacks":null,...}`


def _members(obj: dict[str, object], leave_out: tuple[str, ...]) -> str:
    return _json({k: v for k, v in obj.items() if k not in leave_out})[1:-1]


@lru_cache(maxsize=16)  # a process has one app per store, so one entry per task; bounded all the same
def _template(app: Celery, task_name: str) -> _Template:
    msg = app.amqp.as_task_v2(
        "", task_name, args=(), kwargs={}, root_id="", argsrepr="()", kwargsrepr="{}",
        origin="offload-gateway", ignore_result=True,
    )
    properties = {**msg.properties, "body_encoding": "base64", "delivery_mode": 2, "priority": 0}
    return _Template(headers=_members(msg.headers, _PER_JOB_HEADERS),
                     properties=_members(properties, _PER_JOB_PROPERTIES),
                     embed=_json(msg.body[2]))


def build_task_message(
    app: Celery,
    *,
    job_id: str,
    job_type: JobType | str,
    queue: str,
    tenant: str,
    headers: dict[str, str] | None = None,
    delivery_tag: str | None = None,
) -> str:
    """The Redis list entry that runs `job_id` on `queue`. The Celery task id is the job id.

    `delivery_tag` names the message in kombu's unacknowledged hash while a worker holds it (a
    new one when not given): the job's record keeps it, so the lease reaper can drop a lost
    worker's copy.

    The task's arguments are the job id and its tenant: the worker's claim needs the tenant's
    key, and would otherwise spend a round trip per job reading it from the record. `headers`
    (the trace context: traceparent) ride among the message headers.
    """
    t = _template(app, TASK_NAMES[JobType(job_type)])
    args = _json([job_id, tenant])
    body = f"[{args},{{}},{t.embed}]".encode()
    jid = _json(job_id)
    per_job_headers = f'"id":{jid},"root_id":{jid},"argsrepr":{_json(repr((job_id, tenant)))}'
    if headers:
        per_job_headers += "," + _json(headers)[1:-1]
    return (
        f'{{"body":"{base64.b64encode(body).decode()}","content-encoding":"utf-8",'
        f'"content-type":"application/json","headers":{{{t.headers},{per_job_headers}}},'
        f'"properties":{{{t.properties},"correlation_id":{jid},"delivery_tag":"{delivery_tag or uuid.uuid4()}",'
        f'"delivery_info":{{"exchange":"","routing_key":{_json(queue)}}}}}}}'
    )
