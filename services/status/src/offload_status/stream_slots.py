"""How many live event streams one status process holds open: per tenant and in all.

    offload_sse_streams                     open streams of this process
    offload_sse_streams_limit               the most it holds (OFFLOAD_SSE_MAX_STREAMS)
    offload_sse_streams_refused_total{reason}   refused: `tenant` (429) or `process` (503)

One tenant's streams cannot take every slot: past `OFFLOAD_SSE_MAX_STREAMS_PER_TENANT` its
next stream gets 429, while other tenants still get theirs. Past the process's limit every
tenant gets 503; another replica (or this one, once streams end) has room.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from offload_core.web.problems import ProblemError

SSE_STREAMS = Gauge("offload_sse_streams", "Live event streams (SSE) open in this process",
                    multiprocess_mode="livesum")
SSE_STREAMS_LIMIT = Gauge("offload_sse_streams_limit", "Live event streams this process holds at most",
                          multiprocess_mode="livemax")
SSE_REFUSED = Counter("offload_sse_streams_refused_total", "Live event streams refused at a limit", ["reason"])

RETRY_AFTER_SECONDS = 5


class StreamSlot:
    """One open stream's place; `release()` gives it back (once, however often it is called)."""

    __slots__ = ("_slots", "tenant")

    def __init__(self, slots: "StreamSlots", tenant: str) -> None:
        self._slots: StreamSlots | None = slots
        self.tenant = tenant

    def release(self) -> None:
        if self._slots is not None:
            self._slots._release(self.tenant)
            self._slots = None


class StreamSlots:
    def __init__(self, *, max_streams: int, max_per_tenant: int) -> None:
        self.max_streams, self.max_per_tenant = max_streams, max_per_tenant
        self.open = 0
        self._per_tenant: dict[str, int] = {}  # only tenants with a stream open: at most max_streams entries
        SSE_STREAMS.set(0)
        SSE_STREAMS_LIMIT.set(max_streams)

    def acquire(self, tenant: str) -> StreamSlot:
        """A slot for a new stream of `tenant`, or ProblemError 429 (its share is taken) / 503 (full)."""
        held = self._per_tenant.get(tenant, 0)
        if held >= self.max_per_tenant:
            SSE_REFUSED.labels("tenant").inc()
            raise ProblemError(429, "Too many event streams",
                               f"your tenant already has {held} live event streams open on this server "
                               f"(at most {self.max_per_tenant}); close one, or poll GET /v1/jobs/{{id}}",
                               headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        if self.open >= self.max_streams:
            SSE_REFUSED.labels("process").inc()
            raise ProblemError(503, "Event streams full",
                               f"this server has its limit of {self.max_streams} live event streams open; "
                               "nothing was changed, try again shortly", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        self._per_tenant[tenant] = held + 1
        self.open += 1
        SSE_STREAMS.set(self.open)
        return StreamSlot(self, tenant)

    def _release(self, tenant: str) -> None:
        left = self._per_tenant.get(tenant, 0) - 1
        if left > 0:
            self._per_tenant[tenant] = left
        else:
            self._per_tenant.pop(tenant, None)
        self.open -= 1
        SSE_STREAMS.set(self.open)
