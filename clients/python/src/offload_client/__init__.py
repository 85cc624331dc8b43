"""Python client for Offload: submit OCR, LLM and embedding jobs and document pipelines, follow
them live, fetch their results; run batches of requests from a JSONL file.

`OffloadClient` (sync) and `AsyncOffloadClient` (asyncio) cover every gateway and status
endpoint; see `offload_client.errors` for what they raise.
"""

from .async_client import AsyncOffloadClient
from .client import OffloadClient
from .config import ClientConfig, ConfigError, RetryPolicy
from .errors import (
    ApiError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    OffloadError,
    RateLimitedError,
    ServiceUnavailableError,
    TransportError,
    WaitTimeout,
)
from .models import (
    Batch,
    FileObject,
    Job,
    JobError,
    JobEvent,
    JobPage,
    JobState,
    JobType,
    OtherEvent,
    Pipeline,
    PipelineEvent,
    PipelineJob,
    PipelinePage,
    PipelineStep,
    Priority,
    Progress,
    ProgressEvent,
    QueueStats,
    StateEvent,
    TokenEvent,
)
from .version import __version__

__all__ = [
    "ApiError", "AsyncOffloadClient", "AuthenticationError", "Batch", "ClientConfig", "ConfigError", "ConflictError",
    "FileObject", "InvalidRequestError", "Job", "JobError", "JobEvent", "JobPage", "JobState", "JobType",
    "NotFoundError", "OffloadClient", "OffloadError", "OtherEvent", "Pipeline", "PipelineEvent", "PipelineJob",
    "PipelinePage", "PipelineStep", "Priority", "Progress", "ProgressEvent", "QueueStats",
    "RateLimitedError", "RetryPolicy", "ServiceUnavailableError", "StateEvent", "TokenEvent", "TransportError",
    "WaitTimeout", "__version__",
]
