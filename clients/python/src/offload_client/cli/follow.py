"""Following jobs live from their event streams: a progress bar per job on a terminal, one line
per change otherwise (logs, CI), and an LLM's tokens printed as they arrive.

All jobs are followed at once on one event loop with the async client.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from ..async_client import AsyncOffloadClient
from ..models import Job, JobEvent, JobState, ProgressEvent, StateEvent, TokenEvent
from .render import STATE_STYLES


@dataclass
class Followed:
    """One job being followed, and what was seen of it."""

    job: Job
    label: str
    source_name: str | None = None
    state: JobState = JobState.QUEUED
    streamed_chars: int = 0
    final: Job | None = None
    failure: BaseException | None = None
    events_seen: list[str] = field(default_factory=list)

    @property
    def short_id(self) -> str:
        return self.job.id[:8]


class Reporter(Protocol):
    def event(self, item: Followed, event: JobEvent) -> None: ...
    def done(self, item: Followed) -> None: ...


class LineReporter:
    """One line on stderr per state change or progress step: readable in logs and pipes."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def event(self, item: Followed, event: JobEvent) -> None:
        if isinstance(event, StateEvent):
            if event.state.is_terminal:
                return  # the outcome line (with the result's destination) says how it ended
            extra = f" (attempt {event.attempt})" if event.attempt else ""
            if event.error:
                extra += f": {event.error.type}: {event.error.message}"
            self.console.print(f"{item.short_id} {item.label}: [{STATE_STYLES[event.state]}]{event.state.value}[/]"
                               f"{extra}", highlight=False, markup=True)
        elif isinstance(event, ProgressEvent) and (event.total or event.message):
            what = event.message or f"{event.current}/{event.total}"
            self.console.print(f"{item.short_id} {item.label}: {what}", highlight=False, markup=False)

    def done(self, item: Followed) -> None:
        return None


class BarReporter:
    """A rich progress bar per job, redrawn in place on a terminal."""

    def __init__(self, console: Console, items: list[Followed]) -> None:
        self.progress = Progress(
            SpinnerColumn(finished_text="•"),
            TextColumn("[bold]{task.fields[short]}[/] {task.description}"),
            TextColumn("{task.fields[state]}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {
            it.job.id: self.progress.add_task(it.label, total=None, short=it.short_id,
                                              state=self._state(it.job.state), detail="")
            for it in items
        }

    @staticmethod
    def _state(state: JobState) -> str:
        return f"[{STATE_STYLES[state]}]{state.value}[/]"

    def __enter__(self) -> "BarReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def event(self, item: Followed, event: JobEvent) -> None:
        task = self.tasks[item.job.id]
        if isinstance(event, StateEvent):
            self.progress.update(task, state=self._state(event.state))
            if event.error:
                self.progress.update(task, detail=f"[red]{event.error.message}[/]")
        elif isinstance(event, ProgressEvent):
            if event.total:
                self.progress.update(task, total=event.total, completed=event.current or 0)
            counts = f"{event.current}/{event.total}" if event.total else ""
            self.progress.update(task, detail=event.message or counts)
        elif isinstance(event, TokenEvent):
            self.progress.update(task, detail=f"{item.streamed_chars} chars")

    def done(self, item: Followed) -> None:
        task = self.tasks[item.job.id]
        total = self.progress.tasks[task].total or 1
        succeeded = item.final is not None and item.final.state is JobState.SUCCEEDED
        self.progress.update(task, total=total, completed=total if succeeded else self.progress.tasks[task].completed)


class TokenPrinter:
    """Writes an LLM job's text to `out` as it streams. If the job starts again (a retry after a
    failed attempt) the text starts again too, and the user is told so on stderr."""

    def __init__(self, out: TextIO, console: Console) -> None:
        self.out, self.console = out, console
        self.printed = False

    def event(self, event: JobEvent) -> None:
        if isinstance(event, TokenEvent):
            self.out.write(event.text)
            self.out.flush()
            self.printed = True
        elif isinstance(event, StateEvent) and event.state is JobState.RUNNING and self.printed:
            self.out.write("\n")
            self.out.flush()
            self.console.print(f"[yellow]attempt {event.attempt}: the output starts again[/]")
            self.printed = False

    def end(self) -> None:
        if self.printed:
            self.out.write("\n")
            self.out.flush()


async def follow(client: AsyncOffloadClient, items: list[Followed], *, console: Console,
                 tokens_to: TextIO | None = None, timeout: float | None = None) -> None:
    """Follow every job to its end; fills in `final` (or `failure`) on each item."""
    printer = TokenPrinter(tokens_to, console) if tokens_to is not None else None
    # Bars only where they can be redrawn, and not while tokens are being written to the same screen.
    use_bars = console.is_terminal and printer is None

    async def one(item: Followed, reporter: Reporter) -> None:
        def on_event(event: JobEvent) -> None:
            item.events_seen.append(event.kind)
            if isinstance(event, StateEvent):
                item.state = event.state
            if isinstance(event, TokenEvent):
                item.streamed_chars += len(event.text)
            if printer is not None:
                printer.event(event)
            reporter.event(item, event)

        try:
            item.final = await client.wait(item.job.id, timeout=timeout, on_event=on_event)
        except Exception as exc:  # reported per job by the caller; the other jobs go on
            item.failure = exc
        reporter.done(item)

    if use_bars:
        with BarReporter(console, items) as bars:
            await asyncio.gather(*(one(it, bars) for it in items))
    else:
        lines = LineReporter(console)
        await asyncio.gather(*(one(it, lines) for it in items))
    if printer is not None:
        printer.end()
