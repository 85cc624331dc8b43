"""Following a job under the stream limits of issue 18: a stream the server ends at its maximum
lifetime is resumed with Last-Event-ID, loses nothing, and is not a reconnect "without news";
a stream refused with 429 is opened again after the server's Retry-After. A proxy in front of
the real status service applies the limits (tests/client/proxy.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from offload_client import ClientConfig, OffloadClient, RateLimitedError, RetryPolicy, StateEvent
from tests.client.conftest import SHORT
from tests.client.proxy import StreamLimitProxy
from tests.support.platform import Platform

LONG = {"prompt": "Write a long story about a lighthouse keeper.", "max_tokens": 40, "temperature": 0}
PER_STREAM = 4  # events per stream before the server ends it (a token event may carry several tokens)


@pytest.fixture
def proxy(platform: Platform) -> Iterator[StreamLimitProxy]:
    p = StreamLimitProxy("127.0.0.1", platform.status.port)
    yield p
    p.close()


def client_through(platform: Platform, proxy: StreamLimitProxy, **options: object) -> OffloadClient:
    return OffloadClient(config=ClientConfig.resolve(platform.gateway.url, status_url=proxy.url,
                                                     api_key=platform.keys["alice"], **options))


def stream_requests(proxy: StreamLimitProxy, job_id: str) -> list[tuple[float, str]]:
    return [(when, head) for when, head in zip(proxy.request_times, proxy.request_heads, strict=True)
            if f"/v1/jobs/{job_id}/events " in head]


def test_streams_the_server_ends_are_resumed_without_loss_even_once_the_job_is_over(
        platform: Platform, proxy: StreamLimitProxy):
    proxy.stream_lifetime = PER_STREAM
    # No reconnect without news is allowed: a stream that brought events and then ended is not one.
    with client_through(platform, proxy, max_stream_reconnects=0) as client:
        job = client.submit_llm(**LONG)
        seen = []
        for event in client.events(job.id):
            if not seen:
                # Hold on until the job is over: every later stream replays a finished job, and
                # is ended by the server before the job's last event.
                platform.wait(job.id)
            seen.append(event)

    truth = platform.events(job.id)
    assert [(e.id, e.kind) for e in seen] == [(event_id, kind) for event_id, kind, _ in truth]
    assert isinstance(seen[-1], StateEvent) and seen[-1].state.is_terminal
    resumed_after = [head.lower().split("last-event-id:", 1)[1].split("\r\n", 1)[0].strip()
                     for _, head in stream_requests(proxy, job.id)[1:]]
    # One stream per PER_STREAM events, each resumed right after the last event the one before
    # brought (more than one of them after the job was over).
    assert len(resumed_after) == (len(truth) - 1) // PER_STREAM >= 2
    assert resumed_after == [seen[i].id for i in range(PER_STREAM - 1, len(seen) - 1, PER_STREAM)]


def test_a_stream_refused_with_429_is_opened_again_after_retry_after(platform: Platform, proxy: StreamLimitProxy):
    proxy.refusals, proxy.refusal_retry_after = 1, 2
    with client_through(platform, proxy) as client:
        job = client.submit_llm(**SHORT)
        states = [e.state for e in client.events(job.id) if isinstance(e, StateEvent)]

    assert states[-1] == "succeeded"
    (refused_at, _), (opened_at, _) = stream_requests(proxy, job.id)
    # Not after the client's own default of 1 s: after the 2 s the server asked for.
    assert opened_at - refused_at >= 2


def test_a_stream_refusal_longer_than_the_client_waits_is_raised_at_once(platform: Platform,
                                                                          proxy: StreamLimitProxy):
    proxy.refusals, proxy.refusal_retry_after = 1, 30
    with client_through(platform, proxy, retry=RetryPolicy(max_delay=5)) as client:
        job = client.submit_llm(**SHORT)
        with pytest.raises(RateLimitedError) as refused:
            list(client.events(job.id))
        client.wait(job.id, timeout=120)  # the next stream is let through

    assert refused.value.status == 429 and refused.value.retry_after == 30
    assert "event streams" in refused.value.detail
    assert len(stream_requests(proxy, job.id)) == 2  # the refused one, and wait()'s
