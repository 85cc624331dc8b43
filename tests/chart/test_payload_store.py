"""The payload store's values: nothing by default; with `store: s3`, the gateway and both workers
(never the status service) get the OFFLOAD_S3_* settings, the credentials Secret and the CA
bundle as files and egress to the endpoint, and what the chart wires really makes a working
store against a real S3 server over TLS with a private CA."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import pytest

from offload_core.payloads.s3 import S3PayloadStore
from offload_core.settings import Settings
from tests.chart.chartkit import S3_PAYLOADS, Helm, Rendered
from tests.chart.netpol import egress_allowed
from tests.chart.local_pod import PodResolver
from tests.support.s3server import S3Server, unavailable_reason

S3_USERS = ("gateway", "worker-ocr", "worker-llm")


def _offload_env(rendered: Rendered, service: str) -> dict[str, str]:
    return {k: v.get("value", "") for k, v in rendered.env(service).items() if "S3" in k or "PAYLOAD" in k}


def test_by_default_no_component_hears_of_s3(renders: dict[str, Rendered]) -> None:
    rendered = renders["defaults"]
    for service in (*S3_USERS, "status"):
        assert _offload_env(rendered, service) == {}
        volumes = {v["name"] for v in rendered.deployment(service)["spec"]["template"]["spec"]["volumes"]}
        assert not volumes & {"s3-credentials", "s3-ca"}


def test_with_s3_the_gateway_and_workers_get_settings_files_and_egress_and_status_nothing(
        renders: dict[str, Rendered]) -> None:
    rendered = renders["s3-payloads"]
    for service in S3_USERS:
        assert _offload_env(rendered, service) == {
            "OFFLOAD_PAYLOAD_STORE": "s3", "OFFLOAD_PAYLOAD_S3_THRESHOLD_BYTES": "1024",
            "OFFLOAD_S3_ENDPOINT_URL": "https://minio.storage.svc:9000", "OFFLOAD_S3_BUCKET": "offload-payloads",
            "OFFLOAD_S3_PREFIX": "offload/payloads/", "OFFLOAD_S3_REGION": "us-east-1", "OFFLOAD_S3_ADDRESSING": "path",
            "OFFLOAD_S3_ACCESS_KEY_ID_FILE": "/etc/offload/s3/access-key-id",
            "OFFLOAD_S3_SECRET_ACCESS_KEY_FILE": "/etc/offload/s3/secret-access-key",
            "OFFLOAD_S3_CA_FILE": "/etc/offload/s3-ca/ca.crt"}
        pod = rendered.deployment(service)["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["s3-credentials"]["secret"] == {
            "secretName": "offload-s3", "defaultMode": 0o440,
            "items": [{"key": "access-key-id", "path": "access-key-id"},
                      {"key": "secret-access-key", "path": "secret-access-key"}]}
        assert volumes["s3-ca"]["configMap"]["name"] == "storage-ca"
        mounts = {m["name"]: m for m in rendered.container(service)["volumeMounts"]}
        assert mounts["s3-credentials"] == {"name": "s3-credentials", "mountPath": "/etc/offload/s3", "readOnly": True}
        policy = rendered.get("NetworkPolicy", f"rel-offload-{service}")
        assert {"ports": [{"port": 9000, "protocol": "TCP"}],
                "to": S3_PAYLOADS["networkPolicy"]["s3To"]} in policy["spec"]["egress"]
    assert _offload_env(rendered, "status") == {}
    status_egress = rendered.get("NetworkPolicy", "rel-offload-status")["spec"]["egress"]
    assert all(rule["ports"][0]["port"] != 9000 for rule in status_egress)


def test_the_ca_can_come_from_a_secret_and_the_port_from_the_scheme(helm: Helm) -> None:
    rendered = helm.template({"payloads": {"store": "s3", "s3": {
        "endpointUrl": "https://s3.eu-west-1.amazonaws.com", "bucket": "docs", "addressing": "virtual",
        "credentials": {"existingSecret": "aws", "accessKeyIdKey": "id", "secretAccessKeyKey": "key"},
        "ca": {"secret": "corp-ca", "key": "bundle.pem"}}}})
    volumes = {v["name"]: v for v in rendered.deployment("gateway")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["s3-ca"]["secret"]["secretName"] == "corp-ca"
    assert volumes["s3-ca"]["secret"]["items"] == [{"key": "bundle.pem", "path": "ca.crt"}]
    assert volumes["s3-credentials"]["secret"]["items"] == [{"key": "id", "path": "access-key-id"},
                                                           {"key": "key", "path": "secret-access-key"}]
    assert _offload_env(rendered, "worker-ocr")["OFFLOAD_S3_ADDRESSING"] == "virtual"
    # No s3To: any destination on 443, but never the metadata address (netpol.py adds up every policy).
    policies = rendered.of_kind("NetworkPolicy")
    labels = rendered.deployment("gateway")["spec"]["template"]["metadata"]["labels"]
    assert egress_allowed(policies, labels, "52.95.150.10", 443)
    assert not egress_allowed(policies, labels, "169.254.169.254", 443)


def test_incomplete_s3_values_are_refused_with_every_problem_at_once(helm: Helm) -> None:
    error = helm.template_error({"payloads": {"store": "s3", "s3": {"ca": {"secret": "a", "configMap": "b"}}}})
    for words in ("needs payloads.s3.endpointUrl", "needs payloads.s3.bucket",
                  "needs payloads.s3.credentials.existingSecret", "set configMap or secret, not both"):
        assert words in error
    assert "'redis', 's3'" in helm.template_error({"payloads": {"store": "gcs"}})
    assert "additional properties" in helm.template_error({"payloads": {"s3": {"bucketName": "x"}}}).lower()


@pytest.fixture(scope="module")
def tls_s3() -> S3Server:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = S3Server(https=True).start()
    yield server
    server.cleanup()


@pytest.mark.parametrize("service", S3_USERS)
def test_what_the_chart_wires_is_a_working_store_against_a_real_server(
        helm: Helm, tls_s3: S3Server, tmp_path: Path, monkeypatch, service: str) -> None:
    bucket = tls_s3.create_bucket("chart-" + secrets.token_hex(4))
    rendered = helm.template({"payloads": {"store": "s3", "s3ThresholdBytes": 0, "s3": {
        "endpointUrl": tls_s3.endpoint_url, "bucket": bucket,
        "credentials": {"existingSecret": "offload-s3"}, "ca": {"configMap": "storage-ca"}}}})
    resolver = PodResolver(rendered, secrets={"offload-s3": {"access-key-id": tls_s3.access_key_id,
                                                             "secret-access-key": tls_s3.secret_access_key}})
    resolver.config_maps["storage-ca"] = {"ca.crt": tls_s3.ca_file.read_bytes()}
    container = resolver.deployment(rendered, f"rel-offload-{service}")
    env = container.materialize(tmp_path)
    for name in list(os.environ):
        if name.startswith("OFFLOAD_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("OFFLOAD_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("OFFLOAD_ENV", "dev")  # the keys files of the API services do not matter here

    settings = Settings()  # as the service reads it at start: validated, credentials from the files
    store = S3PayloadStore.from_settings(settings)
    ref = asyncio.run(store.put(store.key_for(f"from-{service}"), b"wired by the chart"))
    assert ref.bucket == bucket and ref.key == f"offload/payloads/from-{service}"
    assert store.get(ref) == b"wired by the chart"
    store.delete(ref)
