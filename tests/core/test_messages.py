"""The gateway's task messages are exactly what Celery's own protocol-2 builder gives."""

from __future__ import annotations

import base64
import json

import pytest
from celery import Celery

from offload_core.queue.messages import build_task_message
from offload_core.queue.routing import TASK_NAMES
from offload_core.types import JobType


def celery_built(app: Celery, *, job_id: str, job_type: str, queue: str, tenant: str,
                 headers: dict[str, str] | None) -> dict:
    """The message as kombu's Redis transport would LPUSH it, built the slow, obvious way."""
    args = (job_id, tenant)
    msg = app.amqp.as_task_v2(job_id, TASK_NAMES[JobType(job_type)], args=args, kwargs={}, root_id=job_id,
                              argsrepr=repr(args), kwargsrepr="{}", origin="offload-gateway", ignore_result=True)
    return {
        "body": json.loads(json.dumps(msg.body)),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {**msg.headers, **(headers or {})},
        "properties": {**msg.properties, "body_encoding": "base64", "delivery_mode": 2, "priority": 0,
                       "delivery_info": {"exchange": "", "routing_key": queue}},
    }


@pytest.mark.parametrize("job", [
    dict(job_id="8c6f7a1e-5b1d-4c2e-9a0f-3d2b1c0e9f8a", job_type="llm", queue="llm.normal", tenant="acme",
         headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}),
    dict(job_id="0e0c2b9e-7a47-4bb5-8d3c-1f2e3d4c5b6a", job_type="ocr", queue="ocr.high",
         tenant='quote " back\\slash é 日本', headers={"traceparent": "00-1-2-00", "tracestate": 'k="v",x=y'}),
    dict(job_id="5f1e2d3c-4b5a-4678-9abc-def012345678", job_type="ocr", queue="ocr.low", tenant="t", headers=None),
])
def test_the_message_is_celerys_own_for_every_job_and_tenant(job):
    app = Celery("messages-test", broker="redis://127.0.0.1:1/0", set_as_current=False)
    raw = build_task_message(app, **job)
    built = json.loads(raw)
    built["body"] = json.loads(base64.b64decode(built["body"]))
    tag = built["properties"].pop("delivery_tag")
    assert built == celery_built(app, **job)
    assert len(tag) == 36 and tag != json.loads(build_task_message(app, **job))["properties"]["delivery_tag"]
