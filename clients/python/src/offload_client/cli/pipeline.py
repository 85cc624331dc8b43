"""`offload pipeline ...`: submit a document with its steps, follow it, cancel or retry it.

    offload pipeline submit invoice.pdf --steps steps.json --wait   # the last step's result on stdout
    offload pipeline status ID
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import WaitTimeout
from ..models import Pipeline, PipelineEvent, Priority
from . import output
from .exit_codes import Exit

pipeline_app = typer.Typer(help="Document pipelines: OCR, then LLM steps over its text (docs/pipelines.md).",
                           no_args_is_help=True)

IdArg = Annotated[str, typer.Argument(help="Pipeline id.")]


def _cli():  # the app module imports this one: look its helpers up when a command runs
    from . import app
    return app


def read_steps(text: str) -> list[dict[str, Any]]:
    """--steps: a JSON file (or JSON text) with the steps, as a list or as {"steps": [...]}."""
    source = Path(text)
    raw = source.read_text(encoding="utf-8") if not text.lstrip().startswith(("[", "{")) and source.is_file() \
        else text
    try:
        spec = json.loads(raw)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON, nor a file of JSON: {exc}") from None
    steps = spec.get("steps") if isinstance(spec, dict) else spec
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise typer.BadParameter('give a list of steps, or {"steps": [...]}')
    return steps


@pipeline_app.command("submit")
def submit(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="PNG, JPEG, TIFF or PDF.")],
    steps: Annotated[str, typer.Option("--steps", "-s", help='The steps: a JSON file, or JSON text: [{"type": '
                                       '"ocr"}, {"type": "llm", "per_page": true, "prompt": "... {text}"}, ...].')],
    priority: Annotated[Priority, typer.Option("--priority", "-p", case_sensitive=False)] = Priority.NORMAL,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow it to the end, then print the result.")] = False,
    wait_timeout: Annotated[float | None, typer.Option("--wait-timeout", help="Give up waiting after this.")] = None,
    output_to: Annotated[Path | None, typer.Option("--output", "-o", help="Write the result here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
) -> None:
    """Submit a document and its steps (prints the pipeline id; --wait follows it to the end)."""
    app = _cli()
    parsed = read_steps(steps)
    with app.sync_client(ctx) as client:
        pipeline = client.submit_pipeline(file, parsed, priority=priority, idempotency_key=idempotency_key)
    if not wait:
        app.out.print(pipeline.model_dump_json() if as_json else pipeline.id, markup=False)
    app.err.print(f"[dim]submitted[/] pipeline [bold]{pipeline.id}[/] ({file.name}: {pipeline.pages} pages, "
                  f"{pipeline.progress.get('jobs', 0)} jobs) [dim]priority {priority.value}[/]", markup=True)
    if wait:
        _follow_to_end(ctx, pipeline.id, timeout=wait_timeout, output_to=output_to, as_json=as_json)


@pipeline_app.command("wait")
def wait_cmd(ctx: typer.Context, pipeline_id: IdArg,
             wait_timeout: Annotated[float | None, typer.Option("--wait-timeout")] = None,
             output_to: Annotated[Path | None, typer.Option("--output", "-o")] = None,
             as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Follow a pipeline until it ends, then print its result."""
    _follow_to_end(ctx, pipeline_id, timeout=wait_timeout, output_to=output_to, as_json=as_json)


def _follow_to_end(ctx: typer.Context, pipeline_id: str, *, timeout: float | None, output_to: Path | None,
                   as_json: bool) -> None:
    app = _cli()

    def show(event: PipelineEvent) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        if event.kind == "state" and data.get("state") in ("succeeded", "failed", "dead", "cancelled"):
            page = f" page {data['page']}" if data.get("page") else ""
            app.err.print(f"  step {int(data.get('step', 0)) + 1}{page}: {data['state']}", markup=False)
        elif event.kind == "blocked":
            app.err.print("  a step failed; the steps after it wait (offload pipeline retry ID)", markup=False)

    with app.sync_client(ctx) as client:
        try:
            pipeline = client.wait_pipeline(pipeline_id, timeout=timeout, on_event=show)
        except WaitTimeout as exc:
            app.err.print(f"{pipeline_id}: still {exc.last_state} after {exc.timeout:g}s; follow it with: "
                          f"offload pipeline wait {pipeline_id}")
            raise typer.Exit(int(Exit.TIMED_OUT)) from None
        except KeyboardInterrupt:
            app.err.print(f"\nstopped following; the pipeline goes on: offload pipeline wait {pipeline_id}")
            raise typer.Exit(int(Exit.INTERRUPTED)) from None
    if pipeline.state != "succeeded":
        app.err.print(f"{pipeline.id}: {pipeline.state}{_first_error(pipeline)}", markup=False)
        raise typer.Exit(int(Exit.JOB_DID_NOT_SUCCEED))
    text = output.as_json(pipeline.result) if as_json else result_text(pipeline.result)
    if output_to is not None:
        output.write(output_to, text)
        app.err.print(f"{pipeline.id}: [green]succeeded[/] -> {output_to}")
    else:
        app.out.print(text, markup=False, highlight=False)
        app.err.print(f"{pipeline.id}: [green]succeeded[/]")


def result_text(result: Any) -> str:
    """The last step's text; a per-page step's texts one page after another."""
    if isinstance(result, list):
        return output.PAGE_BREAK.join(output.result_text(r) if isinstance(r, dict) else output.as_json(r)
                                      for r in result)
    return output.result_text(result) if isinstance(result, dict) else output.as_json(result)


def _first_error(pipeline: Pipeline) -> str:
    for step in pipeline.steps:
        for job in step.jobs:
            if job.error is not None:
                page = f" page {job.page}" if job.page else ""
                return f" at step {step.name}{page}: {job.error.type}: {job.error.message}"
    return ""


@pipeline_app.command("status")
def status_cmd(ctx: typer.Context, pipeline_id: IdArg,
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show a pipeline: state, progress, and each step with its jobs' states."""
    app = _cli()
    with app.sync_client(ctx) as client:
        pipeline = client.get_pipeline(pipeline_id)
    if as_json:
        app.out.print(pipeline.model_dump_json(indent=2), markup=False)
        return
    app.out.print(detail(pipeline))


def detail(pipeline: Pipeline) -> Table:
    table = Table(title=f"pipeline {pipeline.id}: {pipeline.state}", title_justify="left")
    for column in ("step", "type", "state", "done", "jobs"):
        table.add_column(column)
    for step in pipeline.steps:
        counts: dict[str, int] = {}
        for job in step.jobs:
            counts[job.state] = counts.get(job.state, 0) + 1
        table.add_row(step.name, step.type + (" per page" if step.per_page else ""), step.state,
                      f"{step.done}/{len(step.jobs)}", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    p = pipeline.progress
    table.caption = (f"{p.get('pages_done', 0)}/{pipeline.pages} pages, {p.get('jobs_done', 0)}/{p.get('jobs', 0)} "
                     f"jobs done; trace {pipeline.trace_id or '-'}")
    return table


@pipeline_app.command("list")
def list_cmd(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
             as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List your recent pipelines, newest first."""
    app = _cli()
    with app.sync_client(ctx) as client:
        page = client.list_pipelines(limit=limit)
    if as_json:
        app.out.print(page.model_dump_json(indent=2), markup=False)
        return
    table = Table("id", "state", "pages", "jobs done", "created")
    for p in page.pipelines:
        table.add_row(p.id, p.state, str(p.pages), f"{p.progress.get('jobs_done', 0)}/{p.progress.get('jobs', 0)}",
                      p.created_at.strftime("%Y-%m-%d %H:%M:%SZ"))
    app.out.print(table)


@pipeline_app.command("cancel")
def cancel_cmd(ctx: typer.Context, pipeline_id: IdArg) -> None:
    """Cancel every job of the pipeline that has not ended."""
    app = _cli()
    with app.sync_client(ctx) as client:
        pipeline = client.cancel_pipeline(pipeline_id)
    app.err.print(f"{pipeline.id}: {pipeline.state}", markup=False)


@pipeline_app.command("retry")
def retry_cmd(ctx: typer.Context, pipeline_id: IdArg) -> None:
    """Queue a failed pipeline's failed steps again (finished steps are not rerun)."""
    app = _cli()
    with app.sync_client(ctx) as client:
        pipeline = client.retry_pipeline(pipeline_id)
    app.err.print(f"{pipeline.id}: requeued ({pipeline.state})", markup=False)
