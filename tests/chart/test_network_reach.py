"""Where the release's pods may send traffic, with every NetworkPolicy that selects them added up
(netpol.py), for every value set: the cloud metadata address stays out of reach, and each
egress rule reaches only the peers and ports its values name."""

from __future__ import annotations

import pytest

from tests.chart.chartkit import KEDA_API, RELEASE, Helm, Rendered
from tests.chart.netpol import egress_allowed

METADATA = ("169.254.169.254", "fd00:ec2::254")
PORTS = (53, 80, 443, 4317, 4318, 6379, 6380, 8080, 8443, 9090)


def _pods(rendered: Rendered) -> list[tuple[str, dict[str, str]]]:
    pods = [(d["metadata"]["name"], d["spec"]["template"]["metadata"]["labels"])
            for d in rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet")]
    pods += [(d["metadata"]["name"], d["metadata"]["labels"]) for d in rendered.of_kind("Pod")]
    return pods


def test_no_pod_of_any_value_set_can_reach_the_cloud_metadata_address(renders: dict[str, Rendered]) -> None:
    for name, rendered in renders.items():
        policies = rendered.of_kind("NetworkPolicy")
        if not policies:
            continue
        for pod, labels in _pods(rendered):
            for ip in METADATA:
                for port in PORTS:
                    for protocol in ("TCP", "UDP"):
                        allowed = egress_allowed(policies, labels, ip, port, protocol)
                        assert not allowed, f"{name}: {pod} reaches {ip}:{port}/{protocol} through {allowed}"


def _llm_pod(rendered: Rendered) -> dict[str, str]:
    return rendered.deployment("worker-llm")["spec"]["template"]["metadata"]["labels"]


def test_llm_egress_reaches_the_configured_llm_server_and_no_other_private_address(helm: Helm) -> None:
    rendered = helm.template({"components": {"workerLlm": {"llm": {"baseUrl": "http://10.20.0.7:8000/v1"}}},
                              "networkPolicy": {"llmServer": {"to": [{"ipBlock": {"cidr": "10.20.0.0/24"}}]}}})
    policies, pod = rendered.of_kind("NetworkPolicy"), _llm_pod(rendered)
    assert egress_allowed(policies, pod, "10.20.0.7", 8000) == [f"{RELEASE}-offload-worker-llm"]
    assert not egress_allowed(policies, pod, "10.20.0.7", 8080), "only llm.baseUrl's port"
    assert not egress_allowed(policies, pod, "10.30.0.7", 8000), "only the configured peers"
    assert not egress_allowed(policies, pod, "192.168.1.1", 443), "webhooks never reach private ranges"


def test_llm_egress_with_no_peers_given_is_open_but_for_link_local(helm: Helm) -> None:
    rendered = helm.template({"components": {"workerLlm": {"llm": {"baseUrl": "https://llm.example.com/v1"}}}})
    policies, pod = rendered.of_kind("NetworkPolicy"), _llm_pod(rendered)
    assert egress_allowed(policies, pod, "10.1.2.3", 443), "an in-cluster server at a private address"
    assert not egress_allowed(policies, pod, "169.254.169.254", 443)
    assert not egress_allowed(policies, pod, "10.1.2.3", 80), "https: port 443 only"


def test_webhooks_leave_from_the_gateway_to_public_addresses_only(helm: Helm) -> None:
    """The gateway sends webhooks (from the outbox its maintenance loop drains); the workers none."""
    rendered = helm.template({"components": {"workerLlm": {"llm": {"backend": "llamacpp"}}}})
    policies = rendered.of_kind("NetworkPolicy")
    gateway = rendered.deployment("gateway")["spec"]["template"]["metadata"]["labels"]
    assert egress_allowed(policies, gateway, "93.184.216.34", 443), "a public webhook receiver"
    assert not egress_allowed(policies, gateway, "10.1.2.3", 443), "never a private address"
    assert not egress_allowed(policies, gateway, "169.254.169.254", 80)
    ocr = rendered.deployment("worker-ocr")["spec"]["template"]["metadata"]["labels"]
    assert not egress_allowed(policies, ocr, "93.184.216.34", 443), "the OCR worker sends nothing out"
    assert not egress_allowed(policies, _llm_pod(rendered), "93.184.216.34", 443), "nor the llamacpp worker"
    rendered = helm.template({"networkPolicy": {"webhooks": {"enabled": False}}})
    gateway = rendered.deployment("gateway")["spec"]["template"]["metadata"]["labels"]
    assert not egress_allowed(rendered.of_kind("NetworkPolicy"), gateway, "93.184.216.34", 443)


def test_the_llamacpp_backend_opens_no_llm_egress(helm: Helm) -> None:
    rendered = helm.template({"components": {"workerLlm": {"llm": {"backend": "llamacpp"}}},
                              "networkPolicy": {"webhooks": {"enabled": False}}})
    policies, pod = rendered.of_kind("NetworkPolicy"), _llm_pod(rendered)
    assert not egress_allowed(policies, pod, "10.1.2.3", 8080)
    assert not egress_allowed(policies, pod, "93.184.216.34", 443)


@pytest.mark.parametrize(("dns", "ip", "port"), [
    # NodeLocal DNSCache answers on a link-local address: named explicitly, it is allowed.
    ({"to": [{"ipBlock": {"cidr": "169.254.20.10/32"}}]}, "169.254.20.10", 53),
    # OpenShift's DNS pods listen on 5353 behind the Service's port 53.
    ({"to": [{"ipBlock": {"cidr": "172.30.0.10/32"}}], "ports": [5353]}, "172.30.0.10", 5353),
])
def test_dns_egress_follows_the_values(helm: Helm, dns: dict, ip: str, port: int) -> None:
    rendered = helm.template({"networkPolicy": {"dns": dns}}, api_versions=(KEDA_API,))
    policies = rendered.of_kind("NetworkPolicy")
    for pod, labels in _pods(rendered):
        if pod.endswith("-redis"):
            continue  # Redis talks to nobody
        for protocol in ("UDP", "TCP"):
            assert egress_allowed(policies, labels, ip, port, protocol), f"{pod}: no DNS to {ip}:{port}/{protocol}"
        assert not egress_allowed(policies, labels, "169.254.169.254", port, "UDP"), pod


@pytest.mark.parametrize(("endpoint", "port"), [
    ("http://otel-collector.observability.svc:4318", 4318),
    ("http://collector:14318", 14318),
    ("https://otlp.example.com", 443),
])
def test_otlp_egress_opens_the_port_of_the_configured_endpoint(helm: Helm, endpoint: str, port: int) -> None:
    rendered = helm.template({"otel": {"endpoint": endpoint}})
    policies = rendered.of_kind("NetworkPolicy")
    gateway = rendered.deployment("gateway")["spec"]["template"]["metadata"]["labels"]
    assert egress_allowed(policies, gateway, "10.96.0.50", port)
    other = 4317 if port != 4317 else 4318
    assert not egress_allowed(policies, gateway, "10.96.0.50", other), "only the endpoint's port"
