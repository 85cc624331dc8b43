"""The Lua scripts: every change of a job's state is one atomic script (compare-and-set).

A late or duplicate delivery cannot move a finished job, because each script checks the stored
state (and, for a worker, that it still owns the run) before it writes anything. Each script
also appends the matching event to the job's capped stream and keeps the indexes (running,
dead, the tenant's active count) in step, so no reader ever sees a half-made change. Events are
stream entries with two fields: `kind` (state | progress | token) and `data` (JSON).

Each script is a `.lua` file beside this module, complete on its own: it can be read, linted
and run with `redis-cli --eval`. Its first code lines name its KEYS and ARGV:

    local job_key, lease_key = unpack(KEYS)
    local worker_id, lease_ms = unpack(ARGV)

and callers pass them by those names, so no call site counts positions:

    claim = scripts.CLAIM.register(client)
    claim(job_key=..., lease_key=..., worker_id=..., lease_ms=...)

`unpack(ARGV, 1, n)` declares n named arguments followed by any number of unnamed ones, which a
caller gives as `extra_args`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_DECLARATION = re.compile(r"^local ([A-Za-z_][\w, ]*) = unpack\((KEYS|ARGV)(?:, 1, (\d+))?\)$", re.M)


class ScriptArgumentError(TypeError):
    """A script was called with names its file does not declare, or without ones it does."""


@dataclass(frozen=True)
class LuaScript:
    name: str
    source: str
    key_names: tuple[str, ...]
    arg_names: tuple[str, ...]
    variadic: bool  # ARGV may carry unnamed values after the named ones

    @classmethod
    def load(cls, name: str, folder: Path | None = None) -> "LuaScript":
        """The script `<name>.lua` of this folder, or of `folder` (the files' and batches' own)."""
        source = ((folder or Path(__file__).parent) / f"{name}.lua").read_text(encoding="utf-8")
        declared: dict[str, tuple[tuple[str, ...], bool]] = {}
        for match in _DECLARATION.finditer(source):
            names = tuple(n.strip() for n in match.group(1).split(","))
            declared[match.group(2)] = (names, match.group(3) is not None)
        if set(declared) != {"KEYS", "ARGV"}:
            raise ValueError(f"{name}.lua must declare its KEYS and ARGV with `local ... = unpack(...)`")
        keys, _ = declared["KEYS"]
        args, variadic = declared["ARGV"]
        return cls(name, source, keys, args, variadic)

    def layout(self, values: dict[str, Any], extra_args: Sequence[Any] = ()) -> tuple[list[Any], list[Any]]:
        """KEYS and ARGV in the order the script reads them, from values given by name."""
        try:
            keys = [values[n] for n in self.key_names]
            args = [values[n] for n in self.arg_names]
        except KeyError as missing:
            raise ScriptArgumentError(f"{self.name}.lua needs {missing.args[0]}") from None
        if len(values) != len(keys) + len(args):
            unknown = sorted(set(values) - set(self.key_names) - set(self.arg_names))
            raise ScriptArgumentError(f"{self.name}.lua declares no {', '.join(unknown)}")
        if extra_args:
            if not self.variadic:
                raise ScriptArgumentError(f"{self.name}.lua takes no arguments beyond its named ones")
            args.extend(extra_args)
        return keys, args

    def register(self, client: Any) -> "BoundScript":
        """Registered with a redis-py client (sync or asyncio): loaded once, then run by its SHA."""
        return BoundScript(self, client.register_script(self.source))

    def bind(self, run: Callable[..., Any]) -> "BoundScript":
        """`run(keys=..., args=...)`: a script registered with redis-py (sync or asyncio), or a ScriptBatch."""
        return BoundScript(self, run)


class BoundScript:
    """A script with the client that runs it, called with its KEYS and ARGV by name."""

    __slots__ = ("script", "_run")

    def __init__(self, script: LuaScript, run: Callable[..., Any]) -> None:
        self.script, self._run = script, run

    def __call__(self, *, extra_args: Sequence[Any] = (), via: Any = None, **values: Any) -> Any:
        """Run with the named KEYS and ARGV; `via`: a pipeline to queue the call in instead."""
        keys, args = self.script.layout(values, extra_args)
        if via is not None:
            return self._run(keys=keys, args=args, client=via)
        return self._run(keys=keys, args=args)


SUBMIT = LuaScript.load("submit")
CLAIM = LuaScript.load("claim")
HEARTBEAT = LuaScript.load("heartbeat")
PROGRESS = LuaScript.load("progress")
TOKENS = LuaScript.load("tokens")
FINISH = LuaScript.load("finish")
MOVE = LuaScript.load("move")
REQUEUE = LuaScript.load("requeue")
MESSAGE_IDS = LuaScript.load("message_ids")
RESCUE = LuaScript.load("rescue")
DEAD_LETTERS = LuaScript.load("dead_letters")
OUTBOX_TAKE = LuaScript.load("outbox_take")
SET_WEBHOOK_STATUS = LuaScript.load("set_webhook_status")
PURGE = LuaScript.load("purge")
WORKER_BEAT = LuaScript.load("worker_beat")
WORKER_SWEEP = LuaScript.load("worker_sweep")
CREATE_PIPELINE = LuaScript.load("create_pipeline")
CAPACITY = LuaScript.load("capacity")
