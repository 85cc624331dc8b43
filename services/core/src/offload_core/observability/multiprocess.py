"""Prometheus metrics of a prefork worker: every job process counts, the main process reports.

prometheus_client's multiprocess mode keeps each process's values in a small mmap file in one
directory (`PROMETHEUS_MULTIPROC_DIR`); the worker's /metrics port, served by the main process,
adds them up. Files of job processes that have exited stay, so a counter never goes back when
Celery recycles a child (`worker_max_tasks_per_child`); to keep a scrape from reading one file
per process that ever lived, the files of dead processes are folded into one archive file per
metric type before each scrape.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
import threading

from prometheus_client import CollectorRegistry, ProcessCollector, values
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

ENV = "PROMETHEUS_MULTIPROC_DIR"
_PER_PROCESS_FILE = re.compile(r"^(counter|histogram|summary)_(\d+)\.db$")
_lock = threading.Lock()


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def enable(directory: str | None = None) -> str:
    """Switch this process (and the job processes it forks) to multiprocess mode.

    Uses `directory`, else $PROMETHEUS_MULTIPROC_DIR, else a new temporary directory; any
    files left there by an earlier run are removed (their counts belong to a dead worker).
    """
    path = directory or os.environ.get(ENV) or tempfile.mkdtemp(prefix="offload-metrics-")
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    os.environ[ENV] = path
    # prometheus_client chooses how values are stored when it is first imported, which may
    # have happened before this call; choose again now the directory is known.
    values.ValueClass = values.get_value_class()
    return path


def process_exited(pid: int) -> None:
    """Forget a job process's live gauges (its counters and histograms stay, see module doc)."""
    if enabled():
        mark_process_dead(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def compact(path: str) -> int:
    """Fold the counter/histogram files of exited processes into `<type>_archive.db`. Returns
    how many files were folded. Values are added key by key, so totals do not change."""
    folded = 0
    for name in sorted(os.listdir(path)):
        match = _PER_PROCESS_FILE.match(name)
        if not match or int(match.group(2)) == os.getpid() or _alive(int(match.group(2))):
            continue
        source = os.path.join(path, name)
        archive = MmapedDict(os.path.join(path, f"{match.group(1)}_archive.db"))
        try:
            for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(source):
                total, _ = archive.read_value(key)  # (value, timestamp)
                archive.write_value(key, total + value, timestamp)
        finally:
            archive.close()
        os.remove(source)
        folded += 1
    return folded


def scrape_registry() -> CollectorRegistry:
    """A registry holding the sum over every process, for one scrape."""
    path = os.environ[ENV]
    with _lock:  # two scrapes at once must not fold the same file twice
        compact(path)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    ProcessCollector(registry=registry)  # the main process's own memory and CPU
    return registry
