"""checkov's Kubernetes checks on everything the chart renders: no failed check, and every
check the chart skips is skipped in the chart itself, with its reason."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.chart.chartkit import CHART, Rendered, tool


def test_checkov_finds_no_failed_check_and_every_skip_has_a_reason(renders: dict[str, Rendered], tmp_path: Path) -> None:
    for name, rendered in renders.items():
        (tmp_path / f"{re.sub(r'[^a-z0-9]+', '-', name)}.yaml").write_text(rendered.text)
    result = subprocess.run(
        [str(tool("checkov")), "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download", "--quiet",
         "--compact", "-o", "json"],
        capture_output=True, text=True, timeout=600)
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    summary = report["summary"]
    # A scan that parsed nothing would also have no failures.
    assert summary["parsing_errors"] == 0 and summary["passed"] > 500, summary
    failed = [f"{c['check_id']} {c['check_name']} on {c['resource']} ({c['file_path']})"
              for c in report["results"]["failed_checks"]]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert result.returncode == 0, result.stderr[-3000:]

    # Skips: only those annotated in the chart's templates, each with a reason.
    annotated = dict(re.findall(r'checkov\.io/skip\d+: "(CKV[0-9A-Z_]+)=([^"]+)"',
                                "\n".join(p.read_text() for p in (CHART / "templates").rglob("*.yaml"))))
    assert annotated and all(len(reason) > 20 for reason in annotated.values())
    assert summary["skipped"] > 0
