"""Group commit of a Lua script (offload_core.jobs.script_batch) against a real Redis: calls made while
one is in flight share a pipeline, yet each caller gets exactly its own script's answer or error."""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis
from opentelemetry.sdk.trace import TracerProvider
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from offload_core.jobs.script_batch import ScriptBatch
from offload_core.jobs.store import connect
from offload_core.settings import Settings

# A regression here shows as a caller left waiting for ever: fail it fast.
pytestmark = pytest.mark.timeout(30)

# Echoes its argument and counts its runs, so a test sees both who got what and how often it ran.
ECHO = "return {ARGV[1], redis.call('INCR', KEYS[1])}"


def run(coro):
    return asyncio.run(coro)


async def _batch(url: str, script: str = ECHO, timeout: float = 5.0) -> ScriptBatch:
    return ScriptBatch(connect(Settings(env="dev", redis_url=url)), script, timeout_seconds=timeout)


def test_a_call_goes_at_once_and_the_calls_made_meanwhile_share_one_pipeline(redis_url):
    async def scenario():
        batch = await _batch(redis_url)
        await batch(keys=["warm-up"], args=[""])  # Redis now knows the script (no NOSCRIPT re-run)
        before = batch.pipelines_sent
        answers = await asyncio.gather(*(batch(keys=["runs"], args=[f"caller-{i}"]) for i in range(50)))
        return batch.pipelines_sent - before, answers

    pipelines, answers = run(scenario())
    assert pipelines == 2  # the first call alone, at once; the other 49 together, behind it
    assert [a[0] for a in answers] == [f"caller-{i}".encode() for i in range(50)]
    assert sorted(a[1] for a in answers) == list(range(1, 51))  # each script ran once
    assert redis.Redis.from_url(redis_url).get("runs") == b"50"


def test_calls_made_one_after_another_each_go_at_once(redis_url):
    async def scenario():
        batch = await _batch(redis_url)
        await batch(keys=["warm-up"], args=[""])
        before = batch.pipelines_sent
        for i in range(3):
            assert (await batch(keys=["runs"], args=[str(i)]))[0] == str(i).encode()
        return batch.pipelines_sent - before

    assert run(scenario()) == 3


def test_a_failing_script_fails_only_its_own_call(redis_url):
    redis.Redis.from_url(redis_url).hset("not-a-counter", "x", "1")  # INCR on a hash: WRONGTYPE

    async def scenario():
        batch = await _batch(redis_url)
        calls = [batch(keys=["runs"], args=["a"]), batch(keys=["not-a-counter"], args=["b"]),
                 batch(keys=["runs"], args=["c"])]
        return await asyncio.gather(*calls, return_exceptions=True)

    first, failed, third = run(scenario())
    # "a" went alone and the other two behind it, on another connection: either may reach Redis
    # first (as two requests' scripts always could), so which run each was is not fixed.
    assert first[0] == b"a" and third[0] == b"c" and sorted([first[1], third[1]]) == [1, 2]
    assert isinstance(failed, ResponseError) and "WRONGTYPE" in str(failed)


def test_scripts_lost_in_a_redis_restart_are_loaded_again(redis_url):
    async def scenario():
        batch = await _batch(redis_url)
        await batch(keys=["runs"], args=["before"])
        await batch._redis.script_flush()  # what a restarted Redis has: no scripts
        return await asyncio.gather(*(batch(keys=["runs"], args=[str(i)]) for i in range(5)))

    answers = run(scenario())
    assert [a[0] for a in answers] == [str(i).encode() for i in range(5)]
    assert redis.Redis.from_url(redis_url).get("runs") == b"6"  # nothing ran twice


def test_a_caller_that_gives_up_leaves_the_others_their_answers(redis_url):
    async def scenario():
        batch = await _batch(redis_url)
        calls = [asyncio.ensure_future(batch(keys=["runs"], args=[str(i)])) for i in range(3)]
        await asyncio.sleep(0)  # all three are waiting on the batch, not yet sent
        calls[1].cancel()
        return await asyncio.gather(*calls, return_exceptions=True)

    first, cancelled, third = run(scenario())
    assert first[0] == b"0" and third[0] == b"2"
    assert isinstance(cancelled, asyncio.CancelledError)


def test_a_refused_connection_reaches_every_caller_in_the_batch():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: nothing listens there

    async def scenario():
        batch = await _batch(f"redis://127.0.0.1:{port}/0")
        return await asyncio.gather(*(batch(keys=["runs"], args=[str(i)]) for i in range(4)),
                                    return_exceptions=True)

    assert all(isinstance(out, RedisConnectionError) for out in run(scenario()))


@pytest.mark.parametrize("recorded", [False, True], ids=["batched", "alone-in-a-recorded-span"])
def test_a_redis_that_never_answers_fails_every_caller_at_the_deadline(recorded):
    tracer = TracerProvider().get_tracer("test")

    async def scenario():
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.read(65536):  # reads every command, answers none
                pass

        server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        batch = await _batch(f"redis://127.0.0.1:{port}/0", timeout=0.3)

        async def call(i: int):
            if not recorded:
                return await batch(keys=["runs"], args=[str(i)])
            with tracer.start_as_current_span("request"):
                return await batch(keys=["runs"], args=[str(i)])

        outs = await asyncio.gather(*(call(i) for i in range(3)), return_exceptions=True)
        server.close()
        return outs

    outs = run(scenario())
    assert all(isinstance(out, RedisTimeoutError) and "0.3 s" in str(out) for out in outs), outs


def test_a_call_inside_a_recorded_span_goes_on_its_own(redis_url):
    """Its Redis span must sit under the request's span; a shared batch has no one parent."""
    tracer = TracerProvider().get_tracer("test")

    async def scenario():
        batch = await _batch(redis_url)
        with tracer.start_as_current_span("request") as span:
            assert span.is_recording()
            answer = await batch(keys=["runs"], args=["traced"])
        return batch.pipelines_sent, answer

    pipelines, answer = run(scenario())
    assert (pipelines, answer[0]) == (0, b"traced")

