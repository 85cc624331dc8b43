"""Settings refuse unsafe or inconsistent configurations before anything starts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from offload_core.settings import Settings, parse_pairs

STRONG = "k" * 24


def test_production_refuses_to_start_without_api_keys():
    with pytest.raises(ValidationError, match="no API keys"):
        Settings(env="production", api_keys="")


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
