"""kombu's Redis transport with two fixes, both found by tests/reliability, and one saving:

1. An acknowledgement that fails because Redis is down must not stop the worker from
   consuming, ever. kombu's QoS drops a message from its local "delivered" table only after the
   Redis command of an ack or reject succeeded. When Redis is unreachable at that moment, the
   message stays in the table, and with a prefetch of 1 (what Offload runs) the worker never
   asks Redis for another message: it does not notice when Redis comes back, and idles forever
   (test_redis_outage.py). Here the local entry is dropped whatever happens to the command.
   Nothing is lost: Redis still lists the message as unacknowledged, so it is delivered again
   after the visibility timeout. The error is still raised, so Celery logs it.

2. A requeued message (a job whose process was killed: `task_reject_on_worker_lost`) goes back
   to the head of its queue, where kombu's own restore after the visibility timeout puts it too.
   kombu LPUSHes it, and workers BRPOP from the other end: the job waited behind every job queued
   since, two minutes behind a backlog of 200 in test_worker_chaos.py.

3. The unacknowledged-message bookkeeping (an index entry and a hash entry when a message is
   delivered, both removed at its ack) goes as a plain pipeline, not MULTI/EXEC: four commands
   fewer per job (BENCHMARKS.md, "Ceiling"). The two entries are no longer written atomically, so
   a Redis that dies between them can leave one without the other: an index entry alone is
   dropped by kombu's own restore, a hash entry alone is dropped by the lease reaper when it
   recovers the job (its record names the message's tag), and either way the job itself is
   recovered by its lease or by the lost-message sweep.
"""

from __future__ import annotations

from contextlib import contextmanager

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual


class QoS(kombu_redis.QoS):
    @contextmanager
    def pipe_or_acquire(self, pipe=None, client=None):
        if pipe is not None:
            yield pipe
            return
        with self.channel.conn_or_acquire(client) as conn:
            yield conn.pipeline(transaction=False)

    def ack(self, delivery_tag) -> None:
        try:
            super().ack(delivery_tag)
        except self.channel.connection_errors:
            virtual.QoS.ack(self, delivery_tag)
            raise

    def reject(self, delivery_tag, requeue: bool = False) -> None:
        try:
            if requeue:
                self.restore_by_tag(delivery_tag, leftmost=False)  # RPUSH: the next one a worker takes
                virtual.QoS.ack(self, delivery_tag)
            else:
                super().reject(delivery_tag, requeue=False)
        except self.channel.connection_errors:
            virtual.QoS.ack(self, delivery_tag)
            raise


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"
