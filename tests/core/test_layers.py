"""offload_core's folders are layers: each module imports only from its own layer or the ones
below it, at any depth (a lazy import inside a function counts too). The order is the one
offload_core/__init__.py draws and docs/architecture.md tables."""

from __future__ import annotations

import ast
from pathlib import Path

import offload_core

CORE = Path(offload_core.__file__).parent

# Lowest first. A module's layer is its folder, or for the top-level modules the module itself.
LAYERS: list[set[str]] = [
    {"types", "errors", "settings", "process_local"},
    {"documents", "llm", "probe", "embed"},
    {"observability"},
    {"payloads"},
    {"queue"},
    {"jobs"},
    {"fleet"},
    {"files"},
    {"batches"},
    {"webhooks", "pipelines"},
    {"maintenance"},
    {"worker"},
    {"web"},
    {"celery"},  # the app Celery's command-line tools load (offload_core/celery.py)
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _layer(module: str) -> int:
    """offload_core.jobs.store -> the layer of `jobs`."""
    top = module.split(".")[1]
    assert top in LAYER_OF, f"offload_core.{top} belongs to no layer: add it to LAYERS and the docs"
    return LAYER_OF[top]


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "offload_core" else [f"offload_core.{a.name}" for a in node.names]
            found += [n for n in names if n.startswith("offload_core.")]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: a relative import; the core imports by absolute name")
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("offload_core.")]
    return found


def test_every_module_imports_only_from_its_layer_or_below():
    upward = []
    modules = [p for p in CORE.rglob("*.py") if p != CORE / "__init__.py"]
    for path in modules:
        own = _layer("offload_core." + ".".join(path.relative_to(CORE).with_suffix("").parts))
        for imported in _imports(path):
            if _layer(imported) > own:
                upward.append(f"{path.relative_to(CORE)} imports {imported}")
    assert len(modules) > 30
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_every_folder_and_top_level_module_has_a_layer():
    present = {p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    present |= {p.stem for p in CORE.glob("*.py") if p.stem != "__init__"}
    assert present == set(LAYER_OF)
