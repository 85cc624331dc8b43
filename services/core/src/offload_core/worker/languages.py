"""A worker says what it can do: the OCR workers publish the languages they have installed, so
the gateway refuses at submit a language no worker has (instead of a job that fails later).

`offload:ocr:languages` is a sorted set, language -> when a worker last said it has it. Each OCR
worker writes its languages at start and every `REFRESH_SECONDS` while it runs; the key expires
`ocr_languages_ttl_seconds` after the last write, and entries older than that are dropped, so
a language whose workers were all removed is forgotten within that time. Workers scaled to zero
for a while keep their languages known: the TTL is days, not minutes.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from redis.exceptions import RedisError

from offload_core.jobs import keys
from offload_core.settings import Settings

log = logging.getLogger("offload.worker.languages")

REFRESH_SECONDS = 60.0


def publish_languages(client: redis.Redis, languages: list[str], settings: Settings) -> None:
    now = time.time()
    pipe = client.pipeline(transaction=True)
    pipe.zadd(keys.OCR_LANGUAGES, {code: now for code in languages})
    pipe.zremrangebyscore(keys.OCR_LANGUAGES, "-inf", now - settings.ocr_languages_ttl_seconds)
    pipe.expire(keys.OCR_LANGUAGES, settings.ocr_languages_ttl_seconds)
    pipe.execute()


def keep_publishing(client: redis.Redis, languages: list[str], settings: Settings) -> threading.Thread:
    """Publish now and every REFRESH_SECONDS from a daemon thread of this process."""

    def loop() -> None:
        while True:
            try:
                publish_languages(client, languages, settings)
            except (RedisError, OSError) as exc:
                log.warning("could not publish the OCR languages (%s); trying again", exc)
            time.sleep(REFRESH_SECONDS)

    thread = threading.Thread(target=loop, name="ocr-languages", daemon=True)
    thread.start()
    return thread
