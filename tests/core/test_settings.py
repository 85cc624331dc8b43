"""Settings refuse unsafe or inconsistent configurations before anything starts."""

from __future__ import annotations

import os
import subprocess

import pytest

from offload_core.settings import Settings, SettingsError, parse_pairs
from tests.support.processes import VENV_BIN

STRONG = "k" * 24


def test_production_api_refuses_to_start_without_api_keys_but_a_worker_needs_none():
    settings = Settings(env="production", api_keys="")  # a worker's settings: valid
    with pytest.raises(ValueError, match="no API keys"):
        settings.require_api_keys()
    Settings(env="dev").require_api_keys()  # dev mode runs keyless (make run adds a key anyway)


def test_gateway_process_exits_with_the_reason_when_it_has_no_keys(tmp_path, redis_url):
    from tests.support.processes import Service, free_port

    gateway = Service("offload-gateway", {"OFFLOAD_ENV": "production", "OFFLOAD_API_KEYS": "",
                                          "OFFLOAD_REDIS_URL": redis_url}, tmp_path, port=free_port())
    with pytest.raises(RuntimeError, match="exited"):
        gateway.start(timeout=30)
    assert "no API keys" in gateway.log_text()


@pytest.mark.parametrize("key", ["changeme", "short-key"])
def test_production_refuses_default_or_short_keys(key):
    with pytest.raises(SettingsError, match="defaults or shorter"):
        Settings(env="production", api_keys=f"acme:{key}")


def test_visibility_timeout_must_exceed_hard_time_limit():
    with pytest.raises(SettingsError, match="visibility timeout"):
        Settings(env="dev", visibility_timeout_seconds=100, ocr_hard_time_limit_seconds=120)


def test_keys_file_is_read_and_merged(tmp_path):
    f = tmp_path / "keys"
    f.write_text("# tenants\nbeta:" + STRONG + "\n")
    s = Settings(env="production", api_keys=f"alpha:{STRONG}", api_keys_file=f)
    assert s.api_key_pairs == [("alpha", STRONG), ("beta", STRONG)]


def test_malformed_pairs_name_the_entry_without_echoing_the_secret():
    with pytest.raises(ValueError) as info:
        parse_pairs(f"alpha:{STRONG},no-colon-here-secretvalue")
    assert "entry 2" in str(info.value) and "name:value" in str(info.value)
    assert "secretvalue" not in str(info.value) and "no-colon" not in str(info.value)


def test_stream_caps_must_fit_each_other_and_the_connection_cap():
    with pytest.raises(SettingsError, match="OFFLOAD_SSE_MAX_STREAMS_PER_TENANT"):
        Settings(env="dev", sse_max_streams=10, sse_max_streams_per_tenant=20)
    with pytest.raises(SettingsError, match="OFFLOAD_HTTP_MAX_CONNECTIONS"):
        Settings(env="dev", sse_max_streams=100, sse_max_streams_per_tenant=10, http_max_connections=100)


# Real secrets next to bad values: none of them may reach the output of a process that refuses them.
SECRETS = {
    "alice API key": "alice-key-" + "A" * 24, "bob API key": "bob-key-" + "B" * 24,
    "a webhook secret": "whsec-" + "C" * 24, "the LLM API key": "sk-llm-" + "D" * 24,
    "the Redis password": "redis-pass-" + "E" * 16, "a bare key in the key list": "bare-" + "F" * 24,
}
SECRET_ENV = {
    "OFFLOAD_ENV": "production",
    "OFFLOAD_API_KEYS": f"alice:{SECRETS['alice API key']},bob:{SECRETS['bob API key']}",
    "OFFLOAD_WEBHOOK_SECRETS": f"*:{SECRETS['a webhook secret']}",
    "OFFLOAD_LLM_API_KEY": SECRETS["the LLM API key"],
    "OFFLOAD_REDIS_URL": f"redis://default:{SECRETS['the Redis password']}@127.0.0.1:1/0",
    "OFFLOAD_METRICS_PORT": "0", "OFFLOAD_WORKER_HTTP_PORT": "0",
}
BAD_FIELDS = {"OFFLOAD_RETENTION_SECONDS": "a week", "OFFLOAD_OCR_DPI": "9000", "OFFLOAD_ENV": "staging"}
BAD_MODEL = {"OFFLOAD_API_KEYS": SECRET_ENV["OFFLOAD_API_KEYS"] + "," + SECRETS["a bare key in the key list"],
             "OFFLOAD_LLM_SOFT_TIME_LIMIT_SECONDS": "700"}


@pytest.mark.parametrize("command", ["offload-gateway", "offload-status", "offload-worker-llm"])
@pytest.mark.parametrize("bad, named", [
    (BAD_FIELDS, ["OFFLOAD_RETENTION_SECONDS", "OFFLOAD_OCR_DPI", "OFFLOAD_ENV"]),
    (BAD_MODEL, ["entry 3", "llm soft time limit"]),
], ids=["bad-values", "inconsistent-values"])
def test_a_settings_error_names_what_to_fix_and_prints_no_secret(command, bad, named):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OFFLOAD_", "OTEL_"))}
    out = subprocess.run([str(VENV_BIN / command)], env={**clean, **SECRET_ENV, **bad},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    printed = out.stdout + out.stderr
    assert "invalid settings" in out.stderr
    for name in named:
        assert name in out.stderr, (name, out.stderr[-2000:])
    for what, secret in SECRETS.items():
        for piece in (secret, secret[:12], secret[-12:]):
            assert piece not in printed, f"{what} was printed by {command}"
    assert "input_value" not in printed


def test_secrets_are_not_in_the_repr():
    assert STRONG not in repr(Settings(env="production", api_keys=f"acme:{STRONG}"))
