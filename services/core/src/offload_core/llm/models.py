"""The model map: which model names tenants may ask for, and where each one is served.

`OFFLOAD_LLM_MODELS` (YAML or JSON text) or `OFFLOAD_LLM_MODELS_FILE` (a mounted YAML file) maps
each name a tenant may send as `model` to a route:

    qwen-7b:                                  # the name tenants ask for
      base_url: http://vllm:8000/v1           # default: OFFLOAD_LLM_BASE_URL
      served_model: Qwen/Qwen2.5-7B-Instruct  # the name sent upstream; default: the name above
      api_key_file: /etc/offload/llm-keys/vllm  # or api_key_env: VLLM_KEY; default: OFFLOAD_LLM_API_KEY
      max_in_flight: 256                      # streams at once across every pod; 0: no cap
      request_timeout_seconds: 120            # the longest silence within a stream
      connect_timeout_seconds: 5
      json_schema: true                       # the server takes response_format json_schema
      tenants: [alice, bob]                   # who may use it; absent: every tenant

Without a map there is one model, `OFFLOAD_LLM_MODEL`, on `OFFLOAD_LLM_BASE_URL`. A job that
names no model gets `OFFLOAD_LLM_MODEL`, which must be in the map. The gateway refuses (422) a
model that is not in the map or not allowed for the tenant, listing the ones that are; the
worker checks again, so a map changed in between cannot send a name upstream that is not in it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from offload_core.settings import Settings

MAX_MODELS = 256
# Names tenants send: letters, digits and . _ - / : (model names such as `org/model:tag`).
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:")


class _RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(default=None, pattern=r"^https?://")
    served_model: str | None = Field(default=None, min_length=1, max_length=200)
    api_key_file: Path | None = None
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    max_in_flight: int = Field(default=0, ge=0, le=100_000)
    request_timeout_seconds: float | None = Field(default=None, gt=0)
    connect_timeout_seconds: float | None = Field(default=None, gt=0)
    json_schema: bool = True
    tenants: list[str] | None = Field(default=None, max_length=10_000)


@dataclass(frozen=True)
class ModelRoute:
    """Where one model name goes. Its API key is read where it is used (the LLM workers, which
    mount the Secret; the gateway reads the map without it), and never logged."""

    name: str
    base_url: str
    served_model: str
    api_key_file: Path | None
    api_key_env: str | None
    default_api_key: str
    max_in_flight: int  # 0: no global cap
    request_timeout_seconds: float
    connect_timeout_seconds: float
    json_schema: bool
    tenants: frozenset[str] | None  # None: every tenant

    def allows(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants

    @property
    def api_key(self) -> str:
        if self.api_key_file is not None:
            return self.api_key_file.read_text().strip()
        if self.api_key_env is not None:
            return os.environ.get(self.api_key_env, "").strip()
        return self.default_api_key

    def __repr__(self) -> str:  # the API key stays out of logs and tracebacks
        return f"ModelRoute({self.name!r} -> {self.served_model!r} at {self.base_url!r}, max_in_flight={self.max_in_flight})"


class ModelRefused(ValueError):
    """A model a tenant may not use; the message lists the ones it may."""

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(message)
        self.allowed = allowed


@dataclass(frozen=True)
class ModelMap:
    routes: dict[str, ModelRoute]
    default: str

    @classmethod
    def parse(cls, text: str, settings: Settings) -> "ModelMap":
        """The map from YAML/JSON text (empty: the single default model). Raises ValueError
        naming what is wrong, never a value (a value may be a key)."""
        if not text.strip():
            return cls({settings.llm_model: _route(settings.llm_model, _RouteSpec(), settings)}, settings.llm_model)
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ValueError(f"the model map is not valid YAML{where}") from None
        if not isinstance(raw, dict) or not raw:
            raise ValueError("the model map must be a mapping of model names to their settings")
        if len(raw) > MAX_MODELS:
            raise ValueError(f"the model map has {len(raw)} models; at most {MAX_MODELS}")
        routes: dict[str, ModelRoute] = {}
        for name, spec in raw.items():
            name = str(name)
            if not name or len(name) > 200 or not set(name) <= _NAME_CHARS:
                raise ValueError(f"model name {name[:60]!r} must be 1-200 letters, digits or . _ - / :")
            try:
                parsed = _RouteSpec.model_validate(spec or {})
            except ValidationError as exc:
                err = exc.errors(include_input=False, include_url=False)[0]
                field = ".".join(str(p) for p in err["loc"]) or "settings"
                raise ValueError(f"model {name!r}: {field}: {err['msg']}") from None
            routes[name] = _route(name, parsed, settings)
        if settings.llm_model not in routes:
            raise ValueError(f"OFFLOAD_LLM_MODEL ({settings.llm_model!r}), the model of jobs that name none, "
                             "is not in the model map")
        return cls(routes, settings.llm_model)

    def names(self) -> list[str]:
        return sorted(self.routes)

    def allowed_for(self, tenant: str) -> list[str]:
        return sorted(name for name, route in self.routes.items() if route.allows(tenant))

    def route_for(self, model: str | None, tenant: str) -> ModelRoute:
        """The route of `model` (None: the default) for `tenant`, or ModelRefused."""
        name = model or self.default
        route = self.routes.get(name)
        allowed = self.allowed_for(tenant)
        if route is None or not route.allows(tenant):
            listing = ", ".join(allowed) if allowed else "none: ask the operator for access"
            what = "is not served here" if route is None else "is not allowed for your tenant"
            raise ModelRefused(f"model {name!r} {what}; models you may use: {listing}", allowed)
        return route


def _route(name: str, spec: _RouteSpec, s: Settings) -> ModelRoute:
    return ModelRoute(
        name=name, base_url=(spec.base_url or s.llm_base_url).rstrip("/"), served_model=spec.served_model or name,
        api_key_file=spec.api_key_file, api_key_env=spec.api_key_env, default_api_key=s.llm_api_key,
        max_in_flight=spec.max_in_flight,
        request_timeout_seconds=spec.request_timeout_seconds or s.llm_request_timeout_seconds,
        connect_timeout_seconds=spec.connect_timeout_seconds or s.llm_connect_timeout_seconds,
        json_schema=spec.json_schema, tenants=frozenset(spec.tenants) if spec.tenants is not None else None,
    )


_cache: dict[int, tuple[Settings, ModelMap]] = {}
_cache_lock = threading.Lock()


def model_map(settings: Settings) -> ModelMap:
    """The map of these settings, read once (a process holds one or two Settings objects)."""
    with _cache_lock:
        hit = _cache.get(id(settings))
        if hit is not None and hit[0] is settings:
            return hit[1]
        text = settings.llm_models_file.read_text() if settings.llm_models_file else settings.llm_models
        loaded = ModelMap.parse(text, settings)
        if len(_cache) >= 16:
            _cache.clear()
        _cache[id(settings)] = (settings, loaded)
        return loaded


def check_model_map(settings: Settings) -> None:
    """Called by the gateway and the LLM worker at start: a bad map stops the process with a
    message that names the problem."""
    try:
        model_map(settings)
    except (ValueError, OSError) as exc:
        raise ValueError(f"OFFLOAD_LLM_MODELS / OFFLOAD_LLM_MODELS_FILE: {exc}") from None


def estimate_prompt_tokens(chars: int) -> int:
    """A cheap upper-ish estimate for the tokens-per-minute limit: one token per 4 characters."""
    return (chars + 3) // 4

