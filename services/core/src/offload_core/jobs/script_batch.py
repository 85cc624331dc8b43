"""Group commit for one Lua script: calls that pile up while Redis is busy with earlier ones go
as one pipeline, and each caller gets its own script's answer.

Why: under load a gateway process has many submits in hand at once, and each paid redis-py's
whole per-command path (a pooled connection, a write, a wake-up to read). Sent together, that
is paid once per batch: at 32 connections the submit path spent ~20% less CPU per request, with
~8 calls per batch (BENCHMARKS.md, "Sixth round").

When a call goes:
- nothing of ours is in flight: at once, alone, so a quiet gateway answers as fast as before;
- a batch is in flight: at the end of the current event-loop turn, with every other call made
  in that turn. Nothing waits for a batch to fill.

Every call is still its own atomic script, and a caller hears back only once its own script has
run, so a 202 still means stored and queued. A call made inside a span that is being recorded
(an exporter is configured and the request is sampled) goes alone, through the plain script:
its Redis span must sit under the request that made it, and a batch has no single parent.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from opentelemetry import trace
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

_Call = tuple[Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatch:
    """`await batch(keys=[...], args=[...])`, like calling a script registered with redis-py, with
    a deadline: a Redis that does not answer within `timeout_seconds` raises redis-py's
    TimeoutError to every caller waiting on it."""

    def __init__(self, redis: aioredis.Redis, script: str, *, timeout_seconds: float) -> None:
        self._redis = redis
        self._script = redis.register_script(script)
        self._timeout = timeout_seconds
        self._waiting: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()  # held, so a batch in flight is not collected
        self.pipelines_sent = 0  # for the tests and benchmarks

    async def __call__(self, *, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        if trace.get_current_span().is_recording():
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._script(keys=keys, args=args)
            except TimeoutError:
                raise self._timed_out() from None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((keys, args, future))
        if len(self._waiting) == 1:
            if self._sending:
                loop.call_soon(self._send_waiting)  # after the rest of this turn's calls
            else:
                self._send_waiting()
        return await future

    def _send_waiting(self) -> None:
        batch, self._waiting = self._waiting, []
        # An empty context: the batch belongs to no one request's trace or log binding.
        task = asyncio.get_running_loop().create_task(self._send(batch), context=contextvars.Context())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            # One deadline for the batch, like each store call's: a Redis that stops answering
            # must not hold a pooled connection forever (its callers give up at the same time).
            async with asyncio.timeout(self._timeout):
                results = await self._pipeline(batch)
                lost = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
                if lost:  # Redis restarted and forgot the script: load it, run those calls again
                    await self._redis.script_load(self._script.script)
                    for i, result in zip(lost, await self._pipeline([batch[i] for i in lost])):
                        results[i] = result
        except TimeoutError:
            _fail(batch, self._timed_out())
            return
        except asyncio.CancelledError:  # the loop is shutting down
            for *_, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the connection failed: every call in the batch shares its fate
            _fail(batch, exc)
            return
        for (*_, future), result in zip(batch, results):
            if future.done():  # its caller gave up (its own deadline)
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _timed_out(self) -> RedisTimeoutError:
        return RedisTimeoutError(f"Redis did not answer within {self._timeout:g} s")

    async def _pipeline(self, batch: Sequence[_Call]) -> list[Any]:
        self.pipelines_sent += 1
        async with self._redis.pipeline(transaction=False) as pipe:
            for keys, args, _ in batch:
                pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            return await pipe.execute(raise_on_error=False)


def _fail(batch: Sequence[_Call], exc: BaseException) -> None:
    for *_, future in batch:
        if not future.done():
            future.set_exception(exc)
