"""One line of a batch input file: OpenAI's request line, checked exactly as the single-job
submit routes check a request (the same parameter models, limits, model map and token budget),
and turned into the job it becomes.

    {"custom_id": "req-1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from offload_core.embed.request import EmbedParams, admit_embed
from offload_core.errors import RequestRefused
from offload_core.llm.admission import admit_llm
from offload_core.llm.request import LlmParams
from offload_core.settings import Settings
from offload_core.types import JobType

# The endpoints a batch may name, and the job type each line becomes.
ENDPOINTS: dict[str, JobType] = {"/v1/chat/completions": JobType.LLM, "/v1/embeddings": JobType.EMBED}
LINE_KEYS = frozenset({"custom_id", "method", "url", "body"})
MAX_CUSTOM_ID_CHARS = 512


class LineError(ValueError):
    """What is wrong with one line (the message; the caller adds the line number)."""


@dataclass(frozen=True)
class BatchLine:
    custom_id: str
    payload: bytes  # the request as the worker reads it (LlmParams / EmbedParams JSON)
    model: str
    tokens: int  # an LLM line's cost under the tokens-per-minute budget (not charged for batch lines)


def parse_line(raw: bytes, endpoint: str, settings: Settings, tenant: str) -> BatchLine:
    """The line as its job, or LineError saying what to fix."""
    if len(raw) > settings.max_json_body_bytes:
        raise LineError(f"the line is {len(raw)} bytes; a request may be at most {settings.max_json_body_bytes}")
    try:
        line = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LineError(f"not valid JSON ({exc.msg if isinstance(exc, json.JSONDecodeError) else 'not UTF-8'})") from None
    if not isinstance(line, dict):
        raise LineError("a line must be a JSON object with custom_id, method, url and body")
    if unknown := sorted(set(line) - LINE_KEYS):
        raise LineError(f"unknown field(s) {', '.join(unknown)}; a line has custom_id, method, url and body")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID_CHARS:
        raise LineError(f"custom_id must be a string of 1 to {MAX_CUSTOM_ID_CHARS} characters")
    if line.get("method") != "POST":
        raise LineError(f"method must be \"POST\" (got {line.get('method')!r})")
    if line.get("url") != endpoint:
        raise LineError(f"url must be the batch's endpoint {endpoint!r} (got {line.get('url')!r})")
    body = line.get("body")
    if not isinstance(body, dict):
        raise LineError("body must be a JSON object: the request")
    try:
        if ENDPOINTS[endpoint] is JobType.LLM:
            params = LlmParams.model_validate(body)
            admission = admit_llm(params, settings, tenant)
            return BatchLine(custom_id, params.model_dump_json(exclude_none=True).encode(), admission.route.name,
                             admission.cost)
        embed = EmbedParams.model_validate(body)
        model = admit_embed(embed, settings)
        return BatchLine(custom_id, embed.model_dump_json(exclude_none=True).encode(), model, 0)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "body"
        raise LineError(f"body.{where}: {err.get('msg', 'invalid')}") from None
    except RequestRefused as exc:
        raise LineError(f"{exc.title}: {exc.detail}") from None


def split_lines(window: bytes, at_end: bool) -> tuple[list[bytes], int]:
    """The complete lines of `window` (without their newline) and the bytes they take; the last
    piece counts as a line only `at_end` (the file has no more bytes after the window)."""
    lines = window.split(b"\n")
    rest = lines.pop()
    used = len(window) - len(rest)
    if at_end and rest:
        lines.append(rest)
        used = len(window)
    return lines, used


def is_blank(line: bytes) -> bool:
    return not line.strip()


def output_line(job_id: str, custom_id: str, status_code: int | None, body: dict[str, Any] | None,
                error: dict[str, Any] | None) -> str:
    """One line of a batch's output or error file, in OpenAI's format."""
    response = None if status_code is None else {"status_code": status_code, "request_id": job_id, "body": body}
    return json.dumps({"id": f"batch_req_{job_id.replace('-', '')}", "custom_id": custom_id, "response": response,
                       "error": error}, separators=(",", ":"))
