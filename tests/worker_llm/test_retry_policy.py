from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from offload_worker_llm.backends.retry_policy import full_jitter_delay, is_retryable_status, parse_retry_after

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), (" 0 ", 0.0), ("1.5", 1.5), ("-3", 0.0), (format_datetime(NOW + timedelta(seconds=42), usegmt=True), 42.0),
     (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0), ("Wed, 21 Oct 2015 07:28:00", 0.0)],
)
def test_retry_after_seconds_and_http_dates(header: str, seconds: float) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize("header", [None, "", "soon", "inf", "nan"])
def test_unreadable_retry_after_is_ignored(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None


def test_full_jitter_grows_exponentially_up_to_the_cap() -> None:
    top = lambda: 1.0  # noqa: E731 - the upper end of the random range
    assert [full_jitter_delay(n, base=0.5, cap=3.0, rand=top) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert full_jitter_delay(3, base=0.5, cap=3.0, rand=lambda: 0.0) == 0.0


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (408, True), (500, True), (503, True), (400, False), (401, False), (404, False), (422, False)])
def test_which_statuses_are_worth_retrying(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable
