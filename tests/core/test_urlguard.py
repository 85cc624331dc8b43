"""Webhook targets: internal addresses are refused on their face and after DNS."""

from __future__ import annotations

import socket

import pytest

from offload_core.webhooks.urlguard import Allowlist, UrlRefused, check_url, resolve_public

NONE = Allowlist.parse("")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x", "http://[::1]/x", "http://169.254.169.254/latest", "http://10.0.0.5/",
    "http://192.168.1.1/", "http://172.16.0.1/", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/",
    "http://localhost/", "http://redis/", "http://svc.cluster.local/", "ftp://example.com/",
    "http://user:pw@example.com/", "http:///nohost",
])
def test_internal_or_malformed_urls_are_refused(url):
    with pytest.raises(UrlRefused):
        check_url(url, NONE)


def _dns(answers: dict[str, list[str]]):
    """A name service with fixed answers, in getaddrinfo's shape."""
    def resolve(host, port, type=0):
        return [(socket.AF_INET, type, 6, "", (ip, port)) for ip in answers[host]]
    return resolve


@pytest.mark.parametrize("answers", [["127.0.0.1"], ["93.184.215.14", "10.0.0.7"], ["169.254.169.254"]])
def test_names_that_resolve_to_any_internal_address_are_refused_at_delivery(answers):
    with pytest.raises(UrlRefused, match="internal address"):
        resolve_public("https://hooks.example.com/x", NONE, resolve=_dns({"hooks.example.com": answers}))


def test_a_public_name_resolves_to_the_address_to_connect_to():
    dns = _dns({"hooks.example.com": ["93.184.215.14"]})
    assert resolve_public("https://hooks.example.com/x", NONE, resolve=dns) == "93.184.215.14"


def test_allowlist_admits_a_private_network_or_host():
    allow = Allowlist.parse("10.1.0.0/16, hooks.internal")
    check_url("http://10.1.2.3/hook", allow)
    check_url("http://hooks.internal/hook", allow)
    with pytest.raises(UrlRefused):
        check_url("http://10.2.0.1/hook", allow)


def test_public_literal_address_passes():
    assert resolve_public("https://93.184.215.14/hook", NONE) == "93.184.215.14"
