"""`offload submit ocr FILE... --wait` with a real OCR worker: every file followed at once, page
progress reported as it happens, and each text written to its own file."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli.conftest import Cli
from tests.support import documents as docs


def test_submit_ocr_wait_reports_page_progress_and_writes_each_text(offload: Cli, tmp_path: Path):
    pdf, png = docs.pdf_document(pages=2), docs.png_document()
    (tmp_path / "minutes.pdf").write_bytes(pdf.data)
    (tmp_path / "letter.png").write_bytes(png.data)
    out = tmp_path / "texts"

    run = offload("submit", "ocr", str(tmp_path / "minutes.pdf"), str(tmp_path / "letter.png"), "--wait",
                  "--output", str(out))

    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    for name, doc in (("minutes", pdf), ("letter", png)):
        pages = (out / f"{name}.txt").read_text().rstrip("\n").split("\f")
        assert len(pages) == len(doc.texts)
        for expected, got in zip(doc.texts, pages, strict=True):
            assert docs.cer(expected, got) < 0.02, got[:200]
        assert re.search(rf"{name}\.(pdf|png): succeeded in [\d.]+s -> {re.escape(str(out / name))}\.txt",
                         run.stderr)
    progress = re.findall(r"minutes\.pdf: page (\d)/(\d)", run.stderr)
    assert progress == [("1", "2"), ("2", "2")]
