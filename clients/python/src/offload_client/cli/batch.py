"""`offload batch ...`: run a JSONL file of requests as a batch (OpenAI's Batches API on the
gateway), follow it, cancel it, and download its output and error files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import WaitTimeout
from ..models import Batch, Priority
from . import output
from .exit_codes import Exit

batch_app = typer.Typer(help="Batches: a JSONL file of requests run as jobs (OpenAI's Batches API).",
                        no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the batch as JSON.")]
DirOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Download the output and error files into this "
                                                                    "folder when the batch ends.")]


def _cli():  # the app module imports this one: look its helpers up when a command runs
    from . import app

    return app


def summary(batch: Batch) -> str:
    c = batch.request_counts
    files = "".join(f" {name}={value}" for name, value in (("output", batch.output_file_id),
                                                            ("errors", batch.error_file_id)) if value)
    return f"{batch.id} {batch.status} {c.completed + c.failed}/{c.total} done ({c.failed} failed){files}"


def show(batch: Batch, as_json: bool) -> None:
    cli = _cli()
    cli.out.print(batch.model_dump_json(indent=2) if as_json else summary(batch), markup=False)


def download(client, batch: Batch, folder: Path) -> None:
    """Write the batch's output and error files (JSONL) into `folder`."""
    cli = _cli()
    folder.mkdir(parents=True, exist_ok=True)
    for kind, file_id in (("output", batch.output_file_id), ("errors", batch.error_file_id)):
        if file_id:
            path = folder / f"{batch.id}.{kind}.jsonl"
            path.write_bytes(client.file_content(file_id))
            cli.err.print(f"wrote {path}")


@batch_app.command("create")
def create_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="JSONL: one {custom_id, method, url, body} request per line.")],
    endpoint: Annotated[str, typer.Option("--endpoint", "-e", help="/v1/chat/completions or /v1/embeddings.")] = (
        "/v1/chat/completions"),
    priority: Annotated[Priority | None, typer.Option("--priority", "-p", case_sensitive=False,
                                                      help="The lines' queue priority (default low).")] = None,
    callback_url: Annotated[str | None, typer.Option(help="A signed webhook when the batch ends.")] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow the batch to its end.")] = False,
    wait_timeout: Annotated[float | None, typer.Option("--wait-timeout", help="Give up waiting after this.")] = None,
    output_to: DirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload FILE and start a batch; prints its id (and, with --wait, follows it to the end)."""
    cli = _cli()
    with cli.sync_client(ctx) as client:
        batch = client.create_batch(file, endpoint=endpoint, priority=priority, callback_url=callback_url)
        if not (wait or output_to):
            show(batch, as_json)
            return
        cli.err.print(f"{batch.id}: {batch.request_counts.total} requests")
        batch = _follow(client, batch.id, wait_timeout)
        show(batch, as_json)
        if output_to:
            download(client, batch, output_to)
    if batch.status != "completed" or batch.request_counts.failed:
        raise typer.Exit(int(Exit.JOB_DID_NOT_SUCCEED))


def _follow(client, batch_id: str, timeout: float | None) -> Batch:
    cli = _cli()
    try:
        return client.wait_batch(batch_id, timeout=timeout, on_change=lambda b: cli.err.print(summary(b)))
    except WaitTimeout as exc:
        cli.fail(f"batch {batch_id} had not ended after {timeout:g} s (last: {exc.last_state}); it goes on",
                 Exit.TIMED_OUT)


@batch_app.command("get")
def get_cmd(ctx: typer.Context, batch_id: Annotated[str, typer.Argument(help="Batch id.")],
            as_json: JsonOpt = False) -> None:
    """Show a batch: status and request counts."""
    with _cli().sync_client(ctx) as client:
        show(client.get_batch(batch_id), as_json)


@batch_app.command("list")
def list_cmd(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
             as_json: JsonOpt = False) -> None:
    """Your batches, newest first."""
    cli = _cli()
    with cli.sync_client(ctx) as client:
        page = client.list_batches(limit=limit)
    if as_json:
        cli.out.print(output.as_json([b.model_dump(mode="json") for b in page.data]), markup=False)
    else:
        for batch in page.data:
            cli.out.print(summary(batch), markup=False)


@batch_app.command("cancel")
def cancel_cmd(ctx: typer.Context, batch_id: Annotated[str, typer.Argument(help="Batch id.")]) -> None:
    """Cancel a batch: its unfinished lines are cancelled; it ends `cancelled` with the output so far."""
    with _cli().sync_client(ctx) as client:
        batch = client.cancel_batch(batch_id)
    _cli().err.print(summary(batch))


@batch_app.command("wait")
def wait_cmd(ctx: typer.Context, batch_id: Annotated[str, typer.Argument(help="Batch id.")],
             wait_timeout: Annotated[float | None, typer.Option("--timeout")] = None, output_to: DirOpt = None,
             as_json: JsonOpt = False) -> None:
    """Follow a batch to its end (and download its files with -o)."""
    with _cli().sync_client(ctx) as client:
        batch = _follow(client, batch_id, wait_timeout)
        show(batch, as_json)
        if output_to:
            download(client, batch, output_to)
    if batch.status != "completed" or batch.request_counts.failed:
        raise typer.Exit(int(Exit.JOB_DID_NOT_SUCCEED))


@batch_app.command("download")
def download_cmd(ctx: typer.Context, batch_id: Annotated[str, typer.Argument(help="Batch id.")],
                 output_to: Annotated[Path, typer.Option("--output", "-o", help="Folder to write into.")] = Path(".")
                 ) -> None:
    """Write an ended batch's output and error files (<batch>.output.jsonl, <batch>.errors.jsonl)."""
    cli = _cli()
    with cli.sync_client(ctx) as client:
        batch = client.get_batch(batch_id)
        if not batch.is_ended:
            cli.fail(f"batch {batch_id} is {batch.status}; its files are written when it ends", Exit.REFUSED)
        download(client, batch, output_to)
