from __future__ import annotations

from offload_worker_llm.backends.sse import iter_sse_data


def test_events_are_split_on_blank_lines_and_fields_other_than_data_skipped() -> None:
    lines = [": keep-alive", "", "event: message", "id: 1", 'data: {"a":1}', "", "data:[DONE]", ""]
    assert list(iter_sse_data(lines)) == ['{"a":1}', "[DONE]"]


def test_multi_line_data_is_joined_and_an_unterminated_last_event_still_counts() -> None:
    assert list(iter_sse_data(["data: one", "data:  two", "", "data: tail"])) == ["one\n two", "tail"]
