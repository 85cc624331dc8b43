"""The chart README's parameter tables, made from values.yaml's `## @section` and `## @param`
lines. `python -m tests.chart.readme_table` rewrites them (make chart-readme); test_readme.py
checks they are current."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import yaml

from tests.chart.chartkit import CHART

BEGIN, END = "<!-- parameters:begin -->", "<!-- parameters:end -->"


def _value_at(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        node = node[part]
    return node


def _default(value: Any) -> str:
    text = json.dumps(value, separators=(", ", ": "))
    return f"`{text}`" if len(text) <= 60 else "see values.yaml"


def tables() -> str:
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    out: list[str] = []
    for line in text.splitlines():
        section = re.match(r"^## @section (.+)$", line)
        param = re.match(r"^\s*## @param (\S+) (.+)$", line)
        if section:
            out += ["", f"### {section.group(1)}", "", "| Name | Description | Default |", "| --- | --- | --- |"]
        elif param:
            path, description = param.groups()
            out.append(f"| `{path}` | {description.replace('|', '/')} | {_default(_value_at(values, path))} |")
    return "\n".join(out).strip() + "\n"


def current_readme() -> str:
    readme = (CHART / "README.md").read_text()
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[:start] + "\n" + tables() + readme[end:]


if __name__ == "__main__":
    (CHART / "README.md").write_text(current_readme())
    sys.stdout.write("charts/offload/README.md parameters updated\n")
