"""Rich renderables for jobs, job lists and queues."""

from __future__ import annotations

from datetime import datetime, timezone

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..models import Job, JobState, QueueStats

STATE_STYLES = {
    JobState.QUEUED: "cyan",
    JobState.RUNNING: "bold blue",
    JobState.RETRYING: "yellow",
    JobState.SUCCEEDED: "bold green",
    JobState.FAILED: "bold red",
    JobState.DEAD: "bold magenta",
    JobState.CANCELLED: "dim",
}


def state_text(state: JobState) -> Text:
    return Text(state.value, style=STATE_STYLES.get(state, ""))


def when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    if value < 3600:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def progress_text(job: Job) -> str:
    p = job.progress
    if p is None:
        return ""
    # The worker's message ("page 2/3") says it best; the bare counts otherwise.
    return p.message or (f"{p.current}/{p.total}" if p.total else "")


def job_detail(job: Job) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("id", job.id)
    table.add_row("type", job.type.value)
    table.add_row("state", state_text(job.state))
    table.add_row("priority", job.priority.value)
    if job.progress:
        table.add_row("progress", progress_text(job))
    table.add_row("attempts", f"{job.attempts} of {job.max_attempts}")
    table.add_row("created", when(job.created_at))
    table.add_row("started", when(job.started_at))
    table.add_row("finished", when(job.finished_at))
    if job.started_at and job.finished_at:
        table.add_row("took", seconds((job.finished_at - job.started_at).total_seconds()))
    if job.retry_at:
        table.add_row("next try", when(job.retry_at))
    if job.error:
        retry = "retryable" if job.error.retryable else "not retryable"
        table.add_row("error", Text(f"{job.error.type}: {job.error.message} ({retry})", style="red"))
    if job.cancel_requested and not job.is_terminal:
        table.add_row("cancel", "requested; stops at the next checkpoint")
    if job.trace_id:
        table.add_row("trace id", job.trace_id)
    if job.params:
        table.add_row("params", ", ".join(f"{k}={v}" for k, v in job.params.items()))
    return table


def age(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return seconds(max(0.0, (datetime.now(timezone.utc) - moment).total_seconds()))


def jobs_table(jobs: list[Job]) -> Table:
    # Sized for 80 columns: the full id (people copy it), then the short columns; the detail
    # column takes what is left and folds.
    table = Table(title=f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("ID", no_wrap=True, min_width=36)
    table.add_column("TYPE", no_wrap=True, min_width=4)
    table.add_column("STATE", no_wrap=True, min_width=9)
    table.add_column("TRIES", justify="right", no_wrap=True, min_width=5)
    table.add_column("AGE", justify="right", no_wrap=True, min_width=5)
    table.add_column("DETAIL", overflow="fold", min_width=6)
    for job in jobs:
        detail = f"{job.error.type}: {job.error.message}" if job.error else progress_text(job)
        if job.priority.value != "normal":
            detail = f"{job.priority.value} priority" + (f"; {detail}" if detail else "")
        table.add_row(job.id, job.type.value, state_text(job.state), f"{job.attempts}/{job.max_attempts}",
                      age(job.created_at), detail)
    return table


def queues_view(stats: QueueStats) -> Group:
    queues = Table(title="Queues", title_justify="left")
    queues.add_column("QUEUE", no_wrap=True)
    queues.add_column("DEPTH", justify="right")
    queues.add_column("OLDEST", justify="right")
    for name, q in stats.queues.items():
        queues.add_row(name, str(q.depth), seconds(q.oldest_age_seconds))
    workers = Table(title="Workers", title_justify="left")
    workers.add_column("TYPE")
    workers.add_column("BACKLOG", justify="right")
    workers.add_column("RUNNING", justify="right")
    workers.add_column("WANTED REPLICAS", justify="right")
    for name, w in stats.workers.items():
        workers.add_row(name, str(w.backlog), str(w.running), str(w.desired_replicas))
    summary = Text.assemble(("running ", "bold"), str(stats.running), "   ",
                            ("dead ", "bold"), Text(str(stats.dead), style="magenta" if stats.dead else ""))
    return Group(queues, workers, summary)
