"""What a client asks for in `POST /v1/pipelines`: the steps over one document, checked whole.

    {"steps": [
        {"type": "ocr", "languages": "eng"},
        {"type": "llm", "name": "extract", "per_page": true,
         "prompt": "List the invoice lines on this page:\\n{text}"},
        {"type": "llm", "name": "total", "prompt": "Add up these lines:\\n{results}"}],
     "priority": "normal"}

The first step reads the document (OCR); each later step is an LLM chat request (the fields of
`POST /v1/jobs/llm`) whose prompt, or message contents, may name what the step before it made:

    {text}     its text: the document's text after OCR, an LLM step's answer, or the answers
               of a per-page step one after the other
    {results}  the same, each part headed by its page: "[page 3]\\n..." (for a reduce step)

A step with `per_page` runs once per page of the document (a job per page), each seeing only its
own page; it must come right after the OCR step or after another per-page step (page by page).
Anything else in braces is left as written, so JSON examples in a prompt need no escaping.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from offload_core.llm.request import LlmParams
from offload_core.types import Priority

INPUT_FIELDS = ("{text}", "{results}")
MAX_STEPS = 8
STEP_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class OcrStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["ocr"]
    name: str = Field(default="ocr", pattern=STEP_NAME.pattern)
    languages: str | None = Field(default=None, max_length=200, description="As for POST /v1/jobs/ocr")


class LlmStep(LlmParams):
    """An LLM chat request (the body of POST /v1/jobs/llm) whose text may name its input."""

    type: Literal["llm"]
    name: str | None = Field(default=None, pattern=STEP_NAME.pattern)
    per_page: bool = Field(default=False, description="One job per page of the document")

    def request(self) -> LlmParams:
        """The step's chat request as the LLM worker reads it (placeholders still in it)."""
        return LlmParams.model_validate(self.model_dump(exclude={"type", "name", "per_page"}, exclude_none=True))

    def template_text(self) -> str:
        return "\n".join(m["content"] for m in self.chat_messages())


Step = Annotated[OcrStep | LlmStep, Field(discriminator="type")]


class PipelineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[Step] = Field(min_length=2, max_length=MAX_STEPS)
    priority: Priority = Priority.NORMAL

    @model_validator(mode="after")
    def _a_chain_over_one_document(self) -> "PipelineRequest":
        first, *rest = self.steps
        if not isinstance(first, OcrStep):
            raise ValueError("the first step must be {\"type\": \"ocr\"}: a pipeline starts by reading its document")
        names = {first.name}
        for number, step in enumerate(rest, start=2):
            if isinstance(step, OcrStep):
                raise ValueError(f"step {number} is a second OCR step; only the first step reads the document")
            step.name = step.name or f"step{number}"
            if step.name in names:
                raise ValueError(f"step {number}'s name {step.name!r} is used by an earlier step; names must differ")
            names.add(step.name)
            if not any(p in step.template_text() for p in INPUT_FIELDS):
                raise ValueError(f"step {number} ({step.name}) names neither {{text}} nor {{results}}, so it would "
                                 "not see what the step before it made")
            before = self.steps[number - 2]
            if step.per_page and not (isinstance(before, OcrStep) or (isinstance(before, LlmStep) and before.per_page)):
                raise ValueError(f"step {number} ({step.name}) is per_page, so the step before it must be the OCR "
                                 "step or another per_page step")
        return self

    def llm_steps(self) -> list[LlmStep]:
        return [s for s in self.steps if isinstance(s, LlmStep)]

    def job_count(self, pages: int) -> int:
        """How many jobs the pipeline makes for a document of `pages` pages."""
        return 1 + sum(pages if s.per_page else 1 for s in self.llm_steps())
