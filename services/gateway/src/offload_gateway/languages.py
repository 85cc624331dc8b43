"""The OCR languages the OCR workers have installed, as they publish them (worker/languages.py),
read by the gateway in the background so a submit checks them without a Redis round trip."""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from offload_core.jobs import keys
from offload_core.jobs.record import as_text
from offload_core.web.problems import ProblemError

log = logging.getLogger("offload.gateway.languages")


class InstalledLanguages:
    """Refreshed every `interval_seconds`. `known` is None until some OCR worker has published
    its languages (nothing is known then, so nothing is refused)."""

    def __init__(self, *, ttl_seconds: int, interval_seconds: float = 10.0) -> None:
        self.ttl_seconds, self.interval_seconds = ttl_seconds, interval_seconds
        self.known: frozenset[str] | None = None

    async def refresh(self, redis: aioredis.Redis) -> None:
        members = await redis.zrangebyscore(keys.OCR_LANGUAGES, time.time() - self.ttl_seconds, "+inf")
        self.known = frozenset(as_text(m) for m in members) or None

    async def run(self, redis: aioredis.Redis) -> None:
        while True:
            try:
                await self.refresh(redis)
            except (RedisError, OSError) as exc:  # keep the last list; the next read may work
                log.debug("OCR languages not refreshed: %s", exc)
            await asyncio.sleep(self.interval_seconds)

    def missing(self, languages: str) -> list[str]:
        """The codes of `languages` ("eng+deu") no OCR worker has; [] when all are there (or
        when nothing is known yet)."""
        if self.known is None:
            return []
        return [code for code in languages.split("+") if code not in self.known]

    def refuse_missing(self, languages: str, *, where: str = "") -> None:
        """422, listing the installed ones, when an OCR worker would certainly refuse `languages`."""
        if missing := self.missing(languages):
            installed = sorted(self.known or ())
            raise ProblemError(422, "Language not installed",
                               f"{where}no OCR worker has {', '.join(missing)}; installed: {', '.join(installed)}",
                               installed_languages=installed)
