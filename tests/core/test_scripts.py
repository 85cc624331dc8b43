"""The Lua scripts as files: each declares its KEYS and ARGV by name, Redis compiles each one,
each runs on its own with `redis-cli --eval`, and a call with a wrong name is refused before
anything reaches Redis."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from offload_core.jobs import scripts
from offload_core.jobs.scripts import LuaScript, ScriptArgumentError

SCRIPT_FILES = sorted(Path(scripts.__file__).parent.glob("*.lua"))
LOADED = [v for v in vars(scripts).values() if isinstance(v, LuaScript)]


def test_every_lua_file_is_loaded_once_and_names_its_keys_and_args():
    assert sorted(s.name for s in LOADED) == [p.stem for p in SCRIPT_FILES]
    for script in LOADED:
        assert script.key_names and script.arg_names, script.name
        assert len(set(script.key_names + script.arg_names)) == len(script.key_names + script.arg_names), script.name


def test_redis_compiles_every_script(redis_url):
    r = redis.Redis.from_url(redis_url)
    for script in LOADED:
        sha = r.script_load(script.source)
        assert r.script_exists(sha) == [True], script.name


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli comes with redis-server (make test-deps)")
def test_a_script_file_runs_on_its_own_with_redis_cli(redis_url):
    r = redis.Redis.from_url(redis_url)
    r.hset("offload:job:j1", mapping={"id": "j1", "state": "running", "worker": "w1", "cancel_requested": "1"})
    url = urlsplit(redis_url)
    out = subprocess.run(
        ["redis-cli", "-h", url.hostname, "-p", str(url.port), "-n", url.path.strip("/") or "0",
         "--eval", str(Path(scripts.__file__).parent / "heartbeat.lua"),
         "offload:job:j1", "offload:running:llm", ",", "w1", "1000.5", "30"],
        capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]  # owned (the lease was renewed), cancel requested
    assert r.zscore("offload:running:llm", "j1") == 1030.5


def test_calls_name_their_keys_and_args_and_a_wrong_name_is_refused():
    heartbeat = scripts.HEARTBEAT
    named = {"running_key": "r", "job_key": "j", "worker_id": "w", "now": 1, "lease_seconds": 5}
    keys, args = heartbeat.layout(named)
    assert (keys, args) == (["j", "r"], ["w", 1, 5])
    with pytest.raises(ScriptArgumentError, match="needs lease_seconds"):
        heartbeat.layout({k: v for k, v in named.items() if k != "lease_seconds"})
    with pytest.raises(ScriptArgumentError, match="declares no lease_ms"):
        heartbeat.layout({**named, "lease_ms": 5})
    with pytest.raises(ScriptArgumentError, match="no arguments beyond"):
        heartbeat.layout(named, ["extra"])
    assert scripts.TOKENS.layout({"job_key": "j", "events_key": "e", "worker_id": "w", "events_maxlen": 9},
                                 ["a", "b"]) == (["j", "e"], ["w", 9, "a", "b"])
