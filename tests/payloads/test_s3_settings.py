"""The S3 payload store's settings: what is missing is a start-up error that names the variable,
credentials come from variables or mounted files, and none of it prints a secret."""

from __future__ import annotations

import pytest

from offload_core.payloads.s3 import S3Config, goes_to_s3
from offload_core.settings import Settings, SettingsError
from tests.support.processes import Service, free_port

SECRET = "s3-secret-" + "q" * 30
COMPLETE = {"payload_store": "s3", "s3_endpoint_url": "https://s3.example.com", "s3_bucket": "docs",
            "s3_access_key_id": "AKIDEXAMPLE123", "s3_secret_access_key": SECRET}


def test_the_redis_store_needs_no_s3_settings():
    assert Settings(env="dev").payload_store == "redis"


@pytest.mark.parametrize(("missing", "named"), [
    ("s3_endpoint_url", "OFFLOAD_S3_ENDPOINT_URL"),
    ("s3_bucket", "OFFLOAD_S3_BUCKET"),
    ("s3_access_key_id", "OFFLOAD_S3_ACCESS_KEY_ID"),
    ("s3_secret_access_key", "OFFLOAD_S3_SECRET_ACCESS_KEY"),
])
def test_the_s3_store_without_what_it_needs_is_a_start_up_error_naming_it(missing, named):
    with pytest.raises(SettingsError) as info:
        Settings(env="dev", **{k: v for k, v in COMPLETE.items() if k != missing})
    assert named in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)


def test_other_s3_mistakes_are_refused_at_start(tmp_path):
    with pytest.raises(SettingsError, match="ADDRESSING=virtual needs a bucket name"):
        Settings(env="dev", **{**COMPLETE, "s3_bucket": "my.docs", "s3_addressing": "virtual"})
    with pytest.raises(SettingsError, match="OFFLOAD_S3_CA_FILE"):
        Settings(env="dev", **COMPLETE, s3_ca_file=tmp_path / "absent.pem")
    with pytest.raises(SettingsError, match="http:// or https://"):
        Settings(env="dev", **{**COMPLETE, "s3_endpoint_url": "s3.example.com"})
    with pytest.raises(SettingsError, match="credentials file is unreadable"):
        Settings(env="dev", **COMPLETE, s3_secret_access_key_file=tmp_path / "absent")


def test_credentials_from_mounted_files_win_over_the_variables(tmp_path):
    (tmp_path / "id").write_text("AKIDFROMFILE\n")
    (tmp_path / "secret").write_text(SECRET + "\n")
    settings = Settings(env="dev", **{**COMPLETE, "s3_access_key_id": "", "s3_secret_access_key": "other"},
                        s3_access_key_id_file=tmp_path / "id", s3_secret_access_key_file=tmp_path / "secret")
    assert settings.s3_credentials == ("AKIDFROMFILE", SECRET)
    config = S3Config.from_settings(settings)
    assert config.secret_access_key == SECRET and SECRET not in repr(config) and SECRET not in repr(settings)


def test_payloads_at_or_above_the_threshold_go_to_s3_only_with_the_s3_store():
    s3 = Settings(env="dev", **COMPLETE, payload_s3_threshold_bytes=1000)
    assert not goes_to_s3(s3, 999) and goes_to_s3(s3, 1000)
    assert not goes_to_s3(Settings(env="dev", payload_s3_threshold_bytes=1000), 10**9)


def test_a_gateway_with_an_incomplete_s3_store_exits_naming_it_without_printing_the_secret(tmp_path, redis_url):
    gateway = Service("offload-gateway", {
        "OFFLOAD_ENV": "dev", "OFFLOAD_REDIS_URL": redis_url, "OFFLOAD_PAYLOAD_STORE": "s3",
        "OFFLOAD_S3_ENDPOINT_URL": "https://s3.example.com", "OFFLOAD_S3_ACCESS_KEY_ID": "AKIDEXAMPLE123",
        "OFFLOAD_S3_SECRET_ACCESS_KEY": SECRET}, tmp_path, port=free_port())
    with pytest.raises(RuntimeError, match="exited"):
        gateway.start(timeout=30)
    log = gateway.log_text()
    assert "OFFLOAD_S3_BUCKET" in log
    assert SECRET not in log and "AKIDEXAMPLE123" not in log
