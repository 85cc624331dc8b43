"""The names every part of Offload shares: job types, priorities, states and their legal moves.

Nothing else in the code base spells these strings; import them from here.
"""

from __future__ import annotations

from enum import StrEnum


class JobType(StrEnum):
    OCR = "ocr"
    LLM = "llm"


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


# Strict consumption order: a worker drains `high` before it looks at `normal`, and so on.
PRIORITY_ORDER: tuple[Priority, ...] = (Priority.HIGH, Priority.NORMAL, Priority.LOW)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD, JobState.CANCELLED}
)

# The only legal moves (DESIGN §3). The Lua transition scripts enforce the same table;
# tests/core/test_types.py checks the two agree.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.RETRYING, JobState.DEAD, JobState.CANCELLED}
    ),
    JobState.RETRYING: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    # Requeue (POST /v1/jobs/{id}/retry) is the one way out of a failed or dead job.
    JobState.FAILED: frozenset({JobState.QUEUED}),
    JobState.DEAD: frozenset({JobState.QUEUED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


class EventKind(StrEnum):
    STATE = "state"
    PROGRESS = "progress"
    TOKEN = "token"
