"""Turning a job's result into what the user asked for: its text, or its JSON, on stdout or in a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..models import Job

PAGE_BREAK = "\f\n"  # between OCR pages, as `pdftotext` separates them


def result_text(result: dict[str, Any]) -> str:
    """The human text of a result: the LLM completion, or the OCR text page by page."""
    text = result.get("text")
    if isinstance(text, str):
        return text
    pages = result.get("pages")
    if isinstance(pages, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in pages):
        return PAGE_BREAK.join(p["text"] for p in pages)
    return as_json(result)


def as_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def job_json(job: Job) -> str:
    return job.model_dump_json(indent=2)


def output_path(target: Path, job: Job, source_name: str | None, many: bool, suffix: str) -> Path:
    """Where one job's result goes: `target` itself for one job, or a file inside the folder
    `target` named after the input (or the job id) when there are several."""
    if not many and not target.is_dir():
        return target
    stem = Path(source_name).stem if source_name else job.id
    return target / f"{stem}{suffix}"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
