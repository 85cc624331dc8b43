"""Build the `tool` packages of one of our Go modules (tests/cluster/*/go.mod) into the shared
Go tools cache: `<out>/<name>-<version>/<name>`, with a symlink `<out>/bin/<name>`.

A binary that is already there is kept (the version is in its path), so a second run costs
nothing; a changed version builds next to the old one. Builds are static and stripped
(CGO_ENABLED=0, -ldflags "-s -w"), run niced so tests and editors stay responsive, hold a lock
so a background build and a foreground one do not race, and print progress every 20 seconds
(a cold kube-apiserver is ~10 CPU-minutes of silence otherwise). Each build leaves its cost in
`build.json` beside the binary (wall and CPU seconds, peak RSS), which the report quotes.

    python3 tests/cluster/gobuild.py --module tests/cluster/controlplane --out ~/.cache/offload/go-tools \
        --require k8s.io/kubernetes --tool k8s.io/kubernetes/cmd/kube-apiserver=kube-apiserver \
        --x 'k8s.io/component-base/version.gitVersion={version}'

Standard library only: it runs before the project's venv exists (CI starts it first).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

PROGRESS_EVERY = 20.0


def say(message: str) -> None:
    print(f"[go-tools] {message}", flush=True)


def required_version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), flags=re.M)
    if not match:
        sys.exit(f"{go_mod} does not require {module}")
    return match.group(1)


def find_go() -> str:
    for candidate in (os.environ.get("GO"), "go", "/usr/local/go/bin/go"):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    sys.exit("no Go toolchain: install Go 1.25+ (https://go.dev/dl) or set GO=/path/to/go")


def upstream_commit(go: str, module: Path, required: str, version: str) -> str:
    """The upstream commit of a release, as the module proxy records it (for version stamps)."""
    info = subprocess.run([go, "mod", "download", "-json", f"{required}@{version}"], cwd=module,
                          capture_output=True, text=True)
    return json.loads(info.stdout).get("Origin", {}).get("Hash", "") if info.returncode == 0 else ""


def link(out: Path, name: str, binary: Path) -> None:
    (out / "bin").mkdir(parents=True, exist_ok=True)
    symlink = out / "bin" / name
    tmp = symlink.with_name(f".{name}.link")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(binary)
    os.replace(tmp, symlink)


def wait_for_lock(lock, out: Path, name: str) -> None:
    """Take the build lock, saying every 20 s that another build (e.g. CI's background one) has it."""
    waited = 0.0
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if waited % PROGRESS_EVERY == 0:
                say(f"{name}: waiting for another build that holds {out / '.build.lock'} ({waited:.0f} s; its log: "
                    f"{out / 'background-build.log'} if CI started it)")
            time.sleep(1)
            waited += 1


def copy_from_module(go: str, module: Path, required: str, source: str, destination: Path) -> None:
    """Files of the required module's source (e.g. its CRDs), kept beside the binaries."""
    root = subprocess.run([go, "list", "-m", "-f", "{{.Dir}}", required], cwd=module, capture_output=True,
                          text=True, check=True).stdout.strip()
    partial = destination.with_name(f".{destination.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for item in source.split(","):
        shutil.copytree(Path(root) / item, partial / Path(item).name, copy_function=shutil.copyfile)
    os.replace(partial, destination)
    say(f"{destination.name}: copied {source} from {required}")


def build(go: str, module: Path, package: str, binary: Path, ldflags: str, label: str) -> dict[str, float]:
    """go build one package, printing progress; returns what it cost."""
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f".{binary.name}.partial")
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -trimpath -buildvcs=false"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.Popen([go, "build", "-v", "-ldflags", ldflags, "-o", str(partial), package], cwd=module,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    compiled = 0
    tail: list[str] = []
    done = threading.Event()

    def report() -> None:
        while not done.wait(PROGRESS_EVERY):
            say(f"{label}: {compiled} packages compiled, {time.monotonic() - start:.0f} s")

    threading.Thread(target=report, daemon=True).start()
    assert proc.stdout is not None
    for line in proc.stdout:  # `go build -v` names each package it compiles (cached ones are silent)
        compiled += 1
        tail = (tail + [line.rstrip()])[-40:]
    code = proc.wait()
    done.set()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        partial.unlink(missing_ok=True)
        sys.exit(f"go build {package} failed (exit {code}); its last output:\n" + "\n".join(tail))
    os.replace(partial, binary)
    return {
        "wall_s": round(time.monotonic() - start, 1),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        "peak_rss_mib": round(after.ru_maxrss / 1024),  # the largest child so far: compile or link
        "packages_compiled": compiled,
        "size_mib": round(binary.stat().st_size / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", type=Path, required=True, help="directory of our go.mod")
    parser.add_argument("--out", type=Path, required=True, help="the Go tools cache (GO_TOOLS)")
    parser.add_argument("--require", required=True, help="the upstream module whose version names the build")
    parser.add_argument("--tool", action="append", required=True, help="PACKAGE=NAME, once per binary")
    parser.add_argument("--x", action="append", default=[],
                        help="-X var=value for the linker; {version}, {bare} (no v) and {commit} expand")
    parser.add_argument("--copy", action="append", default=[],
                        help="PATH=NAME: copy PATH of the required module's source to <out>/NAME-<version>")
    parser.add_argument("--nice", type=int, default=int(os.environ.get("OFFLOAD_GO_NICE", "10")))
    args = parser.parse_args()

    go = find_go()
    module = args.module.resolve()
    version = required_version(module / "go.mod", args.require)
    out = args.out.expanduser()
    out.mkdir(parents=True, exist_ok=True)
    commit = upstream_commit(go, module, args.require, version) if any("{commit}" in x for x in args.x) else ""
    ldflags = " ".join(["-s", "-w", *(f"-X {x.format(version=version, bare=version.lstrip('v'), commit=commit)}"
                                      for x in args.x)])
    os.nice(args.nice)

    for spec in args.tool:
        package, name = spec.split("=")
        binary = out / f"{name}-{version}" / name
        with (out / ".build.lock").open("w") as lock:
            if not binary.exists():
                wait_for_lock(lock, out, name)
            if binary.exists():
                link(out, name, binary)
                continue
            say(f"{name} {version}: building {package} (cold: minutes; progress every {PROGRESS_EVERY:.0f} s)")
            cost = build(go, module, package, binary, ldflags, f"{name} {version}")
            (binary.parent / "build.json").write_text(json.dumps({"version": version, "package": package, **cost},
                                                                 indent=2) + "\n")
            link(out, name, binary)
            say(f"{name} {version}: done in {cost['wall_s']:.0f} s wall, {cost['cpu_s']:.0f} CPU-s, "
                f"{cost['size_mib']} MiB")
    for spec in args.copy:
        source, name = spec.split("=")
        destination = out / f"{name}-{version}"
        with (out / ".build.lock").open("w") as lock:
            if not destination.exists():
                wait_for_lock(lock, out, name)
                copy_from_module(go, module, args.require, source, destination)
        current = out / name  # <out>/<name> -> <out>/<name>-<version>, as bin/<name> for binaries
        current.unlink(missing_ok=True)
        current.symlink_to(destination.name)


if __name__ == "__main__":
    main()
