"""`offload`: submit jobs, follow them live, and look after queues from a terminal.

Data goes to stdout (job ids, results, tables, JSON); progress and messages go to stderr, so
`offload submit llm "..." --wait > answer.txt` does what it says. Exit codes: see exit_codes.py.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ..async_client import AsyncOffloadClient
from ..client import OffloadClient
from ..config import ClientConfig, ConfigError
from ..errors import (
    ApiError,
    AuthenticationError,
    OffloadError,
    RateLimitedError,
    ServiceUnavailableError,
    TransportError,
    WaitTimeout,
)
from ..models import Job, JobState, JobType, Priority
from . import output, render
from .exit_codes import Exit
from .follow import Followed, follow

app = typer.Typer(
    name="offload",
    help="Submit OCR, LLM and embedding jobs to Offload, follow them live, run batches, and inspect queues.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
submit_app = typer.Typer(help="Submit a job (prints the job id; --wait follows it to the end).", no_args_is_help=True)
app.add_typer(submit_app, name="submit")

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


@dataclass
class Settings:
    gateway_url: str | None
    status_url: str | None
    api_key: str | None
    timeout: float

    def config(self) -> ClientConfig:
        return ClientConfig.resolve(self.gateway_url, status_url=self.status_url, api_key=self.api_key,
                                    timeout=self.timeout)


@app.callback()
def configure(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option("--url", envvar="OFFLOAD_URL", show_default="http://localhost:8000",
                                            help="Gateway base URL.")] = None,
    status_url: Annotated[str | None, typer.Option(
        "--status-url", envvar="OFFLOAD_STATUS_URL",
        help="Status service base URL \\[default: --url if given, else http://localhost:8001].")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="OFFLOAD_API_KEY", show_default=False,
                                                help="API key (sent as a Bearer token).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each HTTP answer.")] = 30.0,
) -> None:
    ctx.obj = Settings(url, status_url, api_key, timeout)


# -- errors and exit codes -----------------------------------------------------------------------


def fail(message: str, code: Exit) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", markup=True)
    raise typer.Exit(int(code))


def wrong_service_hint(settings: Settings, exc: ApiError) -> str:
    """For an answer that says the route is not there (404/405 without a job): which URL was
    asked, where that URL came from, and how to point the CLI at the right service."""
    if exc.status not in (404, 405) or exc.url is None or (exc.status == 404 and "no job" in exc.detail):
        return ""
    try:
        config = settings.config()
    except ConfigError:
        return ""
    said = exc.extra.get("service_url")
    if exc.url.startswith(config.status_url + "/"):
        origin = {"given": "--status-url or OFFLOAD_STATUS_URL", "OFFLOAD_STATUS_URL": "OFFLOAD_STATUS_URL",
                  "the gateway URL": "--url / OFFLOAD_URL, as no status URL was set",
                  "the default": "the default"}.get(config.status_url_from, config.status_url_from)
        fix = f"--status-url {said}" if said else "--status-url <the status service's URL>"
        return (f"\n  asked {exc.url}: the status service's URL is {config.status_url} (from {origin}); "
                f"set {fix} or OFFLOAD_STATUS_URL")
    fix = f"--url {said}" if said else "--url <the gateway's URL>"
    return f"\n  asked {exc.url}: the gateway's URL is {config.gateway_url}; set {fix} or OFFLOAD_URL"


@contextmanager
def reported_errors(settings: Settings) -> Iterator[None]:
    """Turn the client's exceptions into one clear line on stderr and an exit code."""
    try:
        yield
    except ConfigError as exc:
        fail(str(exc), Exit.USAGE)
    except AuthenticationError as exc:
        fail(f"{exc.detail or exc.title} (HTTP {exc.status}); check --api-key / OFFLOAD_API_KEY", Exit.REFUSED)
    except (RateLimitedError, ServiceUnavailableError) as exc:
        wait = f"; retry after {exc.retry_after:.0f}s" if exc.retry_after else ""
        fail(f"{exc.title}: {exc.detail} (HTTP {exc.status}){wait}", Exit.UNAVAILABLE)
    except ApiError as exc:
        fail(f"{exc.title}: {exc.detail} (HTTP {exc.status}){wrong_service_hint(settings, exc)}", Exit.REFUSED)
    except TransportError as exc:
        fail(f"{exc} (is the service running? see --url / --status-url)", Exit.UNAVAILABLE)
    except OffloadError as exc:
        fail(str(exc), Exit.UNAVAILABLE)
    except ValueError as exc:  # an argument the client refused before sending (e.g. a malformed id)
        fail(str(exc), Exit.USAGE)


@contextmanager
def sync_client(ctx: typer.Context) -> Iterator[OffloadClient]:
    settings: Settings = ctx.obj
    with reported_errors(settings):
        with OffloadClient(config=settings.config()) as client:
            yield client


# -- submit ----------------------------------------------------------------------------------------

PriorityOpt = Annotated[Priority, typer.Option("--priority", "-p", case_sensitive=False, help="Queue priority.")]
WaitOpt = Annotated[bool, typer.Option("--wait", "-w",
                                        help="Follow the job live until it ends, then print the result.")]
WaitTimeoutOpt = Annotated[float | None, typer.Option("--wait-timeout",
                                                      help="Give up waiting after this many seconds.")]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Write the result here instead of stdout "
                                                                       "(a folder when there are several jobs).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON: job records (one per line when submitting), "
                                                       "or the full result.")]
CallbackOpt = Annotated[str | None, typer.Option("--callback-url", help="POST the job summary here when it ends.")]
IdemOpt = Annotated[str | None, typer.Option("--idempotency-key", help="Resubmitting with the same key returns the "
                                                                       "first job [default: a new key per job].")]
AtOpt = Annotated[str | None, typer.Option("--at", help="Run at this time (RFC 3339 with a UTC offset, e.g. "
                                                        "2026-12-06T15:00:00Z); the job is scheduled until then.")]
DelayOpt = Annotated[float | None, typer.Option("--delay", min=0, help="Run this many seconds from now.")]


@submit_app.command("ocr")
def submit_ocr(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True,
                                                help="PNG, JPEG, TIFF or PDF files; one job each.")],
    languages: Annotated[str | None, typer.Option("--languages", "-l",
                                                  help="Tesseract languages, e.g. eng+deu.")] = None,
    priority: PriorityOpt = Priority.NORMAL,
    wait: WaitOpt = False,
    wait_timeout: WaitTimeoutOpt = None,
    output_to: OutputOpt = None,
    as_json: JsonOpt = False,
    callback_url: CallbackOpt = None,
    idempotency_key: IdemOpt = None,
    at: AtOpt = None,
    delay: DelayOpt = None,
) -> None:
    """Submit documents for OCR, one job per file."""
    if idempotency_key and len(files) > 1:
        fail("--idempotency-key names one job; give one file, or let each job get its own key", Exit.USAGE)
    followed: list[Followed] = []
    with sync_client(ctx) as client:
        for path in files:
            job = client.submit_ocr(path, languages=languages, priority=priority, callback_url=callback_url,
                                    idempotency_key=idempotency_key, run_at=at, delay_seconds=delay)
            followed.append(Followed(job=job, label=path.name, source_name=path.name))
            announce(job, path.name, wait=wait, as_json=as_json)
    if wait:
        finish(ctx, followed, stream=False, timeout=wait_timeout, output_to=output_to, as_json=as_json)


@submit_app.command("llm")
def submit_llm(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="The prompt ('-' reads it from stdin).")],
    system: Annotated[str | None, typer.Option("--system", "-s", help="A system message to send first.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name \\[default: the worker's].")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", "-n", min=1,
                                                   help="Most tokens to generate.")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", "-t", min=0.0, max=2.0)] = None,
    priority: PriorityOpt = Priority.NORMAL,
    wait: WaitOpt = False,
    stream: Annotated[bool | None, typer.Option(
        "--stream/--no-stream", show_default="on a terminal",
        help="With --wait: print the text as it is generated.")] = None,
    wait_timeout: WaitTimeoutOpt = None,
    output_to: OutputOpt = None,
    as_json: JsonOpt = False,
    callback_url: CallbackOpt = None,
    idempotency_key: IdemOpt = None,
    at: AtOpt = None,
    delay: DelayOpt = None,
) -> None:
    """Submit a prompt to the LLM worker."""
    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt.strip():
        fail("the prompt is empty", Exit.USAGE)
    messages = None
    if system:
        messages, prompt = [{"role": "system", "content": system}, {"role": "user", "content": prompt}], None
    with sync_client(ctx) as client:
        job = client.submit_llm(prompt, messages=messages, model=model, max_tokens=max_tokens,
                                temperature=temperature, priority=priority, callback_url=callback_url,
                                idempotency_key=idempotency_key, run_at=at, delay_seconds=delay)
    label = " ".join((prompt or (system or "")).split())[:40]
    announce(job, label, wait=wait, as_json=as_json)
    if wait:
        streaming = out.is_terminal if stream is None else stream
        finish(ctx, [Followed(job=job, label=label)], stream=streaming and not as_json, timeout=wait_timeout,
               output_to=output_to, as_json=as_json)


def announce(job: Job, label: str, *, wait: bool, as_json: bool) -> None:
    if not wait:  # stdout: the id alone (or the record as one JSON line), for scripts
        out.print(job.model_dump_json() if as_json else job.id, markup=False)
    when = f", scheduled for {job.run_at.isoformat()}" if job.run_at else ""
    err.print(f"[dim]submitted[/] {job.type.value} job [bold]{job.id}[/] ({escape(label)}) "
              f"[dim]priority {job.priority.value}{when}[/]", markup=True)


# -- following -----------------------------------------------------------------------------------


@app.command("wait")
def wait_cmd(
    ctx: typer.Context,
    job_ids: Annotated[list[str], typer.Argument(help="Job ids to follow.")],
    stream: Annotated[bool | None, typer.Option("--stream/--no-stream", show_default="on a terminal",
                                                help="Print an LLM job's text as it is generated.")] = None,
    wait_timeout: WaitTimeoutOpt = None,
    output_to: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Follow existing jobs live until they end, then print their results."""
    with sync_client(ctx) as client:
        jobs = [client.get_job(i) for i in job_ids]
    items = [Followed(job=j, label=j.type.value) for j in jobs]
    streaming = (out.is_terminal if stream is None else stream) and len(items) == 1 \
        and items[0].job.type is JobType.LLM and not as_json
    finish(ctx, items, stream=streaming, timeout=wait_timeout, output_to=output_to, as_json=as_json)


def finish(ctx: typer.Context, items: list[Followed], *, stream: bool, timeout: float | None,
           output_to: Path | None, as_json: bool) -> NoReturn:
    """Follow `items` live, write the results, and exit with the outcome."""
    settings: Settings = ctx.obj

    async def run() -> None:
        async with AsyncOffloadClient(config=settings.config()) as client:
            await follow(client, items, console=err, tokens_to=out.file if stream else None, timeout=timeout)

    with reported_errors(settings):
        try:
            asyncio.run(run())
        except KeyboardInterrupt:
            ids = " ".join(it.job.id for it in items)
            err.print(f"\nstopped following; the job goes on. Follow it again with: offload wait {ids}")
            raise typer.Exit(int(Exit.INTERRUPTED)) from None
    code = Exit.OK
    with sync_client(ctx) as client:
        for item in items:
            code = max(code, write_outcome(client, item, many=len(items) > 1, streamed=stream,
                                           output_to=output_to, as_json=as_json))
    raise typer.Exit(int(code))


def write_outcome(client: OffloadClient, item: Followed, *, many: bool, streamed: bool, output_to: Path | None,
                  as_json: bool) -> Exit:
    if item.failure is not None:
        if isinstance(item.failure, WaitTimeout):
            err.print(f"[yellow]{item.short_id}[/] {item.label}: still {item.failure.last_state} after "
                      f"{item.failure.timeout:g}s; follow it with: offload wait {item.job.id}")
            return Exit.TIMED_OUT
        raise item.failure
    job = item.final
    assert job is not None
    took = ""
    if job.started_at and job.finished_at:
        took = f" in {render.seconds((job.finished_at - job.started_at).total_seconds())}"
    if job.state is not JobState.SUCCEEDED:
        why = f": {job.error.type}: {job.error.message}" if job.error else ""
        err.print(f"{item.short_id} {item.label}: ", render.state_text(job.state), why, sep="")
        return Exit.JOB_DID_NOT_SUCCEED
    result = client.result(job.id)
    text = output.as_json(result) if as_json else output.result_text(result)
    if output_to is not None:
        path = output.output_path(output_to, job, item.source_name, many, ".json" if as_json else ".txt")
        output.write(path, text)
        err.print(f"{item.short_id} {item.label}: [green]succeeded[/]{took} -> {path}")
    else:
        if not streamed:
            if many:
                err.print(f"[bold]== {item.label} ({job.id})[/]")
            out.print(text, markup=False, highlight=False)
        err.print(f"{item.short_id} {item.label}: [green]succeeded[/]{took}")
    return Exit.OK


# -- status ----------------------------------------------------------------------------------------


@app.command("status")
def status_cmd(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="Job id.")],
               as_json: JsonOpt = False) -> None:
    """Show a job: state, progress, attempts, error, trace id."""
    with sync_client(ctx) as client:
        job = client.get_job(job_id)
    out.print(output.job_json(job) if as_json else render.job_detail(job), markup=False)


@app.command("result")
def result_cmd(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="Job id.")],
               output_to: OutputOpt = None, as_json: JsonOpt = False) -> None:
    """Print (or save) the result of a succeeded job."""
    with sync_client(ctx) as client:
        result = client.result(job_id)
    text = output.as_json(result) if as_json else output.result_text(result)
    if output_to:
        output.write(output_to, text)
        err.print(f"wrote {output_to}")
    else:
        out.print(text, markup=False, highlight=False)


@app.command("cancel")
def cancel_cmd(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Cancel a job (a running one stops at its next checkpoint)."""
    with sync_client(ctx) as client:
        job = client.cancel(job_id)
    if job.state is JobState.CANCELLED:
        err.print(f"{job.id}: [dim]cancelled[/]")
    else:
        err.print(f"{job.id}: cancel requested; it stops at its next checkpoint (now {job.state.value})")


@app.command("retry")
def retry_cmd(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Requeue a failed or dead job."""
    with sync_client(ctx) as client:
        job = client.retry(job_id)
    err.print(f"{job.id}: requeued ([cyan]{job.state.value}[/], priority {job.priority.value})")


@app.command("jobs")
def jobs_cmd(
    ctx: typer.Context,
    state: Annotated[JobState | None, typer.Option(case_sensitive=False, help="Only jobs in this state.")] = None,
    job_type: Annotated[JobType | None, typer.Option("--type", case_sensitive=False, help="ocr or llm.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many (newest first).")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List your recent jobs."""
    with sync_client(ctx) as client:
        page = client.list_jobs(state=state, type=job_type, limit=limit)
    if as_json:
        out.print(page.model_dump_json(indent=2), markup=False)
        return
    out.print(render.jobs_table(page.jobs))
    if page.next_cursor:
        err.print("[dim]there may be more; raise --limit (at most 200) or filter with --state / --type[/]")


@app.command("dead")
def dead_cmd(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
             as_json: JsonOpt = False) -> None:
    """List dead jobs (every tenant's with an admin key); requeue one with `offload retry ID`."""
    with sync_client(ctx) as client:
        jobs = client.dead_letters(limit)
    if as_json:
        out.print(output.as_json([j.model_dump(mode="json") for j in jobs]), markup=False)
    else:
        out.print(render.jobs_table(jobs))


@app.command("queues")
def queues_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Queue depth and oldest message per queue, running and dead jobs, replicas wanted."""
    with sync_client(ctx) as client:
        stats = client.queues()
    out.print(stats.model_dump_json(indent=2) if as_json else render.queues_view(stats), markup=False)


# -- pipelines (cli/pipeline.py) -------------------------------------------------------------------

from .pipeline import pipeline_app  # noqa: E402 - its commands use this module's helpers

app.add_typer(pipeline_app, name="pipeline")


# -- batches (cli/batch.py) ------------------------------------------------------------------------

from .batch import batch_app  # noqa: E402 - its commands use this module's helpers

app.add_typer(batch_app, name="batch")
