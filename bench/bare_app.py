"""The least any job API can do, for the submit-path comparison: a bare FastAPI endpoint that
stores the request and queues its id in one Redis transaction (MULTI: HSET + LPUSH), then
answers 202. No auth, no validation, no idempotency, no rate limit, no tracing, no metrics.
It runs with the gateway's server settings, the garbage collector's included (settle_collector).

`uvicorn bench.bare_app:app` with BENCH_REDIS_URL; served with the same uvicorn as the gateway.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from offload_core.web.deps import settle_collector


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.redis = aioredis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    settle_collector()  # the same collector settings as the gateway: a server setting, not API work
    yield
    await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/v1/jobs/llm", status_code=202)
async def submit(request: Request) -> JSONResponse:
    body = await request.body()
    job_id = str(uuid.uuid4())
    async with request.app.state.redis.pipeline(transaction=True) as pipe:
        pipe.hset(f"bare:job:{job_id}", mapping={"state": "queued", "payload": body})
        pipe.lpush("bare:queue", job_id)
        await pipe.execute()
    return JSONResponse({"id": job_id, "state": "queued"}, status_code=202)


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ok"}
