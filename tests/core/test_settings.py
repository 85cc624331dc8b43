"""Settings refuse unsafe or inconsistent configurations before anything starts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from offload_core.settings import Settings, parse_pairs

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
    with pytest.raises(ValidationError, match="defaults or shorter"):
        Settings(env="production", api_keys=f"acme:{key}")


def test_visibility_timeout_must_exceed_hard_time_limit():
    with pytest.raises(ValidationError, match="visibility timeout"):
        Settings(env="dev", visibility_timeout_seconds=100, ocr_hard_time_limit_seconds=120)


def test_keys_file_is_read_and_merged(tmp_path):
    f = tmp_path / "keys"
    f.write_text("# tenants\nbeta:" + STRONG + "\n")
    s = Settings(env="production", api_keys=f"alpha:{STRONG}", api_keys_file=f)
    assert s.api_key_pairs == [("alpha", STRONG), ("beta", STRONG)]


def test_malformed_pairs_name_the_entry_without_echoing_the_secret():
    with pytest.raises(ValueError) as info:
        parse_pairs("no-colon-here-secretvalue")
    assert "name:value" in str(info.value)


def test_secrets_are_not_in_the_repr():
    assert STRONG not in repr(Settings(env="production", api_keys=f"acme:{STRONG}"))
