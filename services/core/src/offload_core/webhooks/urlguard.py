"""Where Offload may send a webhook: never to loopback, link-local, private or otherwise
internal addresses (SSRF), unless an operator allow-listed the host or network.

`check_url` is the cheap check the gateway runs at submit time (scheme, literal addresses,
internal names). `resolve_public` runs at delivery time: it resolves the name and refuses if
ANY address is internal, and the caller then connects to the address it checked (so a DNS
answer that changes between check and connect cannot redirect the request).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")


class UrlRefused(ValueError):
    """The URL may not be called; the message says why."""


@dataclass(frozen=True)
class Allowlist:
    hosts: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, text: str) -> "Allowlist":
        hosts, nets = set(), []
        for item in (x.strip() for x in text.split(",")):
            if not item:
                continue
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(nets))

    def allows_host(self, host: str) -> bool:
        return host in self.hosts

    def allows_ip(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip in net for net in self.networks)


def is_internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


def split(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, or UrlRefused."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"the URL cannot be parsed ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("only http and https URLs can receive webhooks")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise UrlRefused("the URL has no host")
    if parts.username or parts.password:
        raise UrlRefused("the URL must not carry credentials")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_url(url: str, allow: Allowlist) -> None:
    """Refuse URLs that are internal on their face. Raises UrlRefused."""
    _, host, _ = split(url)
    if allow.allows_host(host):
        return
    ip = _literal_ip(host)
    if ip is not None:
        if is_internal(ip) and not allow.allows_ip(ip):
            raise UrlRefused(f"{host} is a loopback, private or link-local address; webhooks go to public hosts only")
        return
    if host == "localhost" or host.endswith(_INTERNAL_SUFFIXES) or "." not in host:
        raise UrlRefused(f"{host} is an internal host name; webhooks go to public hosts only")


def resolve_public(url: str, allow: Allowlist, resolve=socket.getaddrinfo) -> str:
    """Resolve the URL's host and return the address to connect to; UrlRefused if any is internal.

    `resolve` is `socket.getaddrinfo` unless a caller (a test) brings its own name service.
    """
    check_url(url, allow)
    _, host, port = split(url)
    ip = _literal_ip(host)
    if ip is not None:
        return str(ip)
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UrlRefused(f"{host} does not resolve ({exc.strerror})") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not allow.allows_host(host):
        bad = [str(a) for a in addresses if is_internal(a) and not allow.allows_ip(a)]
        if bad:
            raise UrlRefused(f"{host} resolves to internal address {bad[0]}; webhooks go to public hosts only")
    return str(addresses[0])
