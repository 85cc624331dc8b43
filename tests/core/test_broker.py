"""offload_core.queue.broker: kombu's Redis transport, against a real Redis."""

from __future__ import annotations

import pytest
from kombu import Connection, Exchange, Queue

from offload_core.queue.broker import TRANSPORT
from tests.support.processes import RedisServer

QUEUE = Queue("llm.normal", Exchange("llm.normal", type="direct"), routing_key="llm.normal")


def _connect(url: str) -> Connection:
    return Connection(url, transport=TRANSPORT, transport_options={"visibility_timeout": 3600})


def test_a_requeued_message_is_the_next_one_delivered(redis_url):
    with _connect(redis_url) as conn:
        producer = conn.Producer()
        for body in ("first", "second", "third"):
            producer.publish(body, exchange=QUEUE.exchange, routing_key="llm.normal", declare=[QUEUE])
        queue = QUEUE(conn.default_channel)
        taken = queue.get(no_ack=False)
        assert taken.payload == "first"
        taken.reject(requeue=True)  # what Celery does when the job's process was killed
        again = queue.get(no_ack=False)
        assert again.payload == "first", "the requeued message went behind the others"
        again.ack()
        assert [queue.get(no_ack=True).payload for _ in range(2)] == ["second", "third"]


def test_an_ack_that_fails_while_redis_is_down_does_not_block_the_next_delivery():
    server = RedisServer().start()
    try:
        with _connect(server.url) as conn:
            channel = conn.default_channel
            channel.basic_qos(prefetch_count=1)
            conn.Producer().publish("job", exchange=QUEUE.exchange, routing_key="llm.normal", declare=[QUEUE])
            message = QUEUE(channel).get(no_ack=False)
            assert not channel.qos.can_consume()  # prefetch 1: one message out
            server.kill()
            with pytest.raises(conn.connection_errors):
                message.ack()
            # Redis still lists it as unacknowledged (restored after the visibility timeout);
            # locally it is gone, so the worker asks for more once Redis is back.
            assert channel.qos.can_consume()
    finally:
        server.cleanup()
