"""The `offload` command line (installed with the `cli` extra: typer and rich)."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .app import app
    except ImportError as exc:  # the library was installed without the `cli` extra
        sys.stderr.write(f"offload: the command line needs the 'cli' extra "
                         f"(pip install 'offload-client[cli]'): {exc}\n")
        raise SystemExit(2) from None
    app()
