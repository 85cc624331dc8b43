"""A batch input line is checked as the single-job routes check a request, and split from the
file in windows without losing or inventing a line."""

from __future__ import annotations

import json

import pytest

from offload_core.batches.lines import LineError, output_line, parse_line, split_lines
from offload_core.settings import Settings

SETTINGS = Settings(env="dev", llm_max_tokens_limit=100)
CHAT = "/v1/chat/completions"


def line(**changes) -> bytes:
    base = {"custom_id": "a", "method": "POST", "url": CHAT,
            "body": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}}
    base.update(changes)
    return json.dumps(base).encode()


def test_a_good_chat_line_becomes_the_payload_the_worker_reads():
    parsed = parse_line(line(), CHAT, SETTINGS, "alice")
    assert parsed.custom_id == "a" and parsed.model == "smollm2-135m-instruct"
    assert json.loads(parsed.payload) == {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
                                          "temperature": 0.7}


@pytest.mark.parametrize("raw, words", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (line(extra=1), "unknown field(s) extra"),
    (line(custom_id=""), "custom_id must be"),
    (line(method="GET"), "method must be"),
    (line(url="/v1/embeddings"), "url must be the batch's endpoint"),
    (line(body={"messages": [], "max_tokens": 5}), "body.messages"),
    (line(body={"prompt": "x", "max_tokens": 500}), "max_tokens may be at most 100"),
    (line(body={"prompt": "x", "model": "gpt-9", "max_tokens": 5}), "Unknown model"),
    (line(body={"prompt": "x", "priority": "high"}), "body.priority"),
])
def test_bad_lines_say_what_is_wrong(raw, words):
    with pytest.raises(LineError, match=None) as refused:
        parse_line(raw, CHAT, SETTINGS, "alice")
    assert words in str(refused.value)


def test_embedding_lines_meet_the_embed_limits():
    raw = json.dumps({"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
                      "body": {"input": ["x"] * 300}}).encode()
    with pytest.raises(LineError, match="at most 256"):
        parse_line(raw, "/v1/embeddings", SETTINGS, "alice")


def test_windows_split_into_whole_lines_only():
    assert split_lines(b"a\nbb\ncc", at_end=False) == ([b"a", b"bb"], 5)
    assert split_lines(b"a\nbb\ncc", at_end=True) == ([b"a", b"bb", b"cc"], 7)
    assert split_lines(b"partial", at_end=False) == ([], 0)


def test_output_lines_are_openais_shape():
    out = json.loads(output_line("0b0e-1", "cid", 200, {"x": 1}, None))
    assert out == {"id": "batch_req_0b0e1", "custom_id": "cid", "response": {"status_code": 200,
                   "request_id": "0b0e-1", "body": {"x": 1}}, "error": None}
