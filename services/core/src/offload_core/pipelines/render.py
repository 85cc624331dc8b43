"""What an LLM step's job asks its model: the step's prompt with the results it waited for.

`{text}` becomes the text before it, `{results}` the same with each page's part headed by its
page (spec.py). When that text does not fit the model's context with the prompt and the answer
(`llm_context_tokens`, at a conservative CHARS_PER_TOKEN), it is cut into chunks that do, on page
boundaries first, then paragraphs, lines, and at worst mid-line; the step asks once per chunk
and its answer is the chunks' answers one after the other. The result says so (`chunking`), so
nobody mistakes a concatenation for one answer over the whole text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from offload_core.llm.request import LlmParams

# English prose is about 4 characters per token for the usual tokenizers; 3 leaves room for
# numbers, names and other scripts, so a chunk fits rather than being cut off by the server.
CHARS_PER_TOKEN = 3
SAFETY_TOKENS = 16  # the chat template's own tokens around the messages
MIN_CHUNK_CHARS = 200


class StepInputMissing(Exception):
    """What this step reads is not there (a result expired): the step cannot run."""


@dataclass(frozen=True)
class Part:
    page: int | None
    text: str


@dataclass(frozen=True)
class RenderedStep:
    requests: list[LlmParams]  # one per chunk
    chunking: dict[str, Any] | None  # None when the input fitted whole


def step_parts(inputs: list[dict[str, Any] | None], page: int | None, input_ids: list[str]) -> list[Part]:
    """The pieces of text a step reads, from the results of the jobs it waited for (in page order)."""
    for job_id, result in zip(input_ids, inputs):
        if result is None:
            raise StepInputMissing(f"the result of job {job_id}, which this step reads, is no longer stored")
    if len(inputs) == 1 and "pages" in inputs[0]:  # the OCR step's result
        pages = [Part(p["page"], p["text"]) for p in inputs[0]["pages"]]
        if page is not None and not 1 <= page <= len(pages):
            raise StepInputMissing(f"the document's text has {len(pages)} pages, not page {page}")
        return [pages[page - 1]] if page is not None else pages
    if len(inputs) == 1:
        return [Part(page, inputs[0]["text"])]
    return [Part(number, result["text"]) for number, result in enumerate(inputs, start=1)]


def fill(template: str, parts: list[Part]) -> str:
    text = "\n\n".join(p.text for p in parts)
    results = "\n\n".join(f"[page {p.page}]\n{p.text}" if p.page is not None else p.text for p in parts)
    return template.replace("{text}", text).replace("{results}", results)


def render(request: LlmParams, parts: list[Part], *, context_tokens: int) -> RenderedStep:
    """The requests to make for a step, chunked to fit `context_tokens` with the answer."""
    templates = [m["content"] for m in request.chat_messages()]
    fixed_chars = sum(len(t.replace("{text}", "").replace("{results}", "")) for t in templates)
    budget = (context_tokens - request.max_tokens - SAFETY_TOKENS) * CHARS_PER_TOKEN - fixed_chars
    budget = max(MIN_CHUNK_CHARS, budget)
    total = len(fill("{results}", parts))
    if total <= budget:
        return RenderedStep([_filled(request, parts)], None)
    chunks, by = _chunks(parts, budget)
    return RenderedStep([_filled(request, chunk) for chunk in chunks], {
        "chunks": len(chunks), "max_chunk_chars": budget, "input_chars": total, "split_on": by,
        "context_tokens": context_tokens, "chars_per_token": CHARS_PER_TOKEN,
        "combined": "each chunk was asked separately; the text is their answers in order",
    })


def _filled(request: LlmParams, parts: list[Part]) -> LlmParams:
    if request.prompt is not None:
        return request.model_copy(update={"prompt": fill(request.prompt, parts)})
    messages = [m.model_copy(update={"content": fill(m.content, parts)}) for m in request.messages or []]
    return request.model_copy(update={"messages": messages})


def _chunks(parts: list[Part], budget: int) -> tuple[list[list[Part]], str]:
    """Parts grouped into chunks of at most `budget` characters (headers included); a part too
    big alone is cut into pieces that keep its page."""
    by = "pages"
    pieces: list[Part] = []
    for part in parts:
        room = budget - len(f"[page {part.page}]\n") if part.page is not None else budget
        if len(part.text) <= room:
            pieces.append(part)
            continue
        cut, how = _cut(part.text, room)
        by = how if by == "pages" or how == "characters" else by
        pieces.extend(Part(part.page, piece) for piece in cut)
    chunks: list[list[Part]] = [[]]
    for piece in pieces:
        if chunks[-1] and len(fill("{results}", chunks[-1] + [piece])) > budget:
            chunks.append([])
        chunks[-1].append(piece)
    return chunks, by


def _cut(text: str, room: int) -> tuple[list[str], str]:
    """`text` cut into pieces of at most `room` characters, at paragraph ends if it can, else
    line ends, else anywhere."""
    for separator, how in (("\n\n", "paragraphs"), ("\n", "lines")):
        units = text.split(separator)
        if all(len(u) <= room for u in units):
            pieces: list[str] = [""]
            for unit in units:
                joined = f"{pieces[-1]}{separator}{unit}" if pieces[-1] else unit
                if len(joined) <= room:
                    pieces[-1] = joined
                else:
                    pieces.append(unit)
            return [p for p in pieces if p], how
    return [text[i:i + room] for i in range(0, len(text), room)], "characters"
