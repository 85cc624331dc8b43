"""A pipeline's steps as asked (checked whole), and what an LLM step asks its model: the text it
waited for in place of {text} / {results}, in chunks that fit the context when it does not."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from offload_core.llm.request import LlmParams
from offload_core.pipelines.render import Part, StepInputMissing, render, step_parts
from offload_core.pipelines.spec import PipelineRequest

OCR = {"type": "ocr"}


def steps(*llm: dict) -> dict:
    return {"steps": [OCR, *({"type": "llm", **s} for s in llm)]}


@pytest.mark.parametrize("body, says", [
    ({"steps": [{"type": "llm", "prompt": "{text}"}, OCR]}, "the first step must be"),
    (steps({"prompt": "no input"}), "names neither {text} nor {results}"),
    ({"steps": [OCR, OCR]}, "second OCR step"),
    (steps({"prompt": "{text}"}, {"prompt": "{text}", "per_page": True}), "must be the OCR step or another per_page"),
    (steps({"prompt": "{text}", "name": "a"}, {"prompt": "{text}", "name": "a"}), "used by an earlier step"),
    (steps({"prompt": "{text}", "temperature": 9}), "less than or equal to 2"),
    ({"steps": [OCR]}, "at least 2"),
])
def test_a_pipeline_that_cannot_run_is_refused_whole_saying_why(body, says):
    with pytest.raises(ValidationError) as refused:
        PipelineRequest.model_validate(body)
    assert says in str(refused.value)


def test_job_counts_follow_the_pages():
    spec = PipelineRequest.model_validate(steps({"prompt": "{text}", "per_page": True}, {"prompt": "{results}"}))
    assert spec.job_count(20) == 22 and [s.name for s in spec.steps] == ["ocr", "step2", "step3"]


OCR_RESULT = {"pages": [{"page": 1, "text": "alpha"}, {"page": 2, "text": "beta"}], "text": "alpha\fbeta"}


def test_a_per_page_job_reads_its_own_page_and_a_reduce_reads_every_page_in_order():
    assert step_parts([OCR_RESULT], 2, ["ocr"]) == [Part(2, "beta")]
    reduce = step_parts([{"text": "one"}, {"text": "two"}], None, ["a", "b"])
    request = LlmParams(prompt="Sum up:\n{results}\nAll: {text}", max_tokens=16)
    rendered = render(request, reduce, context_tokens=2048)
    (asked,) = rendered.requests
    assert asked.prompt == "Sum up:\n[page 1]\none\n\n[page 2]\ntwo\nAll: one\n\ntwo" and rendered.chunking is None
    with pytest.raises(StepInputMissing, match="job b"):
        step_parts([{"text": "x"}, None], None, ["a", "b"])


def test_braces_other_than_the_placeholders_stay_as_written():
    request = LlmParams(messages=[{"role": "system", "content": 'Answer as {"total": n}'},
                                  {"role": "user", "content": "{text}"}], max_tokens=8)
    (asked,) = render(request, [Part(None, "42")], context_tokens=2048).requests
    assert [m.content for m in asked.messages] == ['Answer as {"total": n}', "42"]


def test_text_beyond_the_context_is_asked_in_chunks_on_page_boundaries_and_the_result_says_so():
    pages = [Part(n, f"page {n} " + "word " * 300) for n in range(1, 11)]  # ~1,500 chars a page
    rendered = render(LlmParams(prompt="Summarise {results}", max_tokens=256), pages, context_tokens=2048)
    budget = rendered.chunking["max_chunk_chars"]
    assert rendered.chunking["chunks"] == len(rendered.requests) > 1 and rendered.chunking["split_on"] == "pages"
    assert all(len(r.prompt) <= budget + len("Summarise ") for r in rendered.requests)
    # Every page is asked about exactly once, in order.
    seen = [n for r in rendered.requests for n in range(1, 11) if f"[page {n}]\npage {n} " in r.prompt]
    assert seen == list(range(1, 11))


def test_one_page_too_big_alone_is_cut_at_paragraphs():
    text = "\n\n".join(f"paragraph {n} " + "x" * 900 for n in range(12))
    rendered = render(LlmParams(prompt="{text}", max_tokens=256), [Part(1, text)], context_tokens=2048)
    assert rendered.chunking["split_on"] == "paragraphs" and len(rendered.requests) > 1
    joined = "".join(r.prompt for r in rendered.requests)
    assert all(f"paragraph {n} " in joined for n in range(12))
