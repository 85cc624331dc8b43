"""How answers become exceptions and waits: problem+json fields, Retry-After in both of its
forms, and answers that are not problem+json at all (a proxy's error page)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx

from offload_client import ApiError, ConflictError, RetryPolicy, ServiceUnavailableError
from offload_client.errors import error_from_response, parse_retry_after


def test_problem_fields_and_extra_members_are_kept():
    response = httpx.Response(409, json={"type": "about:blank", "title": "Idempotency-Key reused",
                                         "status": 409, "detail": "use a new key", "instance": "/v1/jobs/llm",
                                         "job_id": "abc"})
    error = error_from_response(response)
    assert isinstance(error, ConflictError)
    assert (error.status, error.title, error.detail, error.instance) == (409, "Idempotency-Key reused",
                                                                       "use a new key", "/v1/jobs/llm")
    assert error.extra == {"job_id": "abc"}


def test_a_non_json_error_page_still_becomes_a_typed_error():
    response = httpx.Response(502, text="<html>Bad Gateway</html>", headers={"Retry-After": "7"})
    error = error_from_response(response)
    assert isinstance(error, ServiceUnavailableError) and isinstance(error, ApiError)
    assert error.status == 502 and "Bad Gateway" in error.detail and error.retry_after == 7


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    assert parse_retry_after("30") == 30
    soon = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=90), usegmt=True)
    assert 80 < parse_retry_after(soon) <= 90
    past = format_datetime(datetime.now(timezone.utc) - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(past) == 0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_the_retry_policy_follows_retry_after_and_gives_up_beyond_its_limits():
    policy = RetryPolicy(max_retries=2, backoff=1, max_delay=10)
    assert policy.delay(0, retry_after=5) == 5
    assert policy.delay(0, retry_after=30) is None  # longer than the caller wants to block
    assert 0.5 <= policy.delay(1, retry_after=None) <= 2  # backoff with jitter when not told
    assert policy.delay(2, retry_after=1) is None  # retries used up
