"""What rendered NetworkPolicies let a pod send, judged as Kubernetes does: policies that select
the pod add up, and a connection is allowed when any egress rule of any of them allows it.

Only destinations outside the cluster are judged here (an IP address and a port), so a peer given
by namespaceSelector or podSelector never matches them: such peers select pods. That is the case
that matters for the metadata address: a rule whose `to:` is left out matches every address, and
no `except` of another rule can take that back.
"""

from __future__ import annotations

import ipaddress
from typing import Any

Policy = dict[str, Any]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value, op = labels.get(expr["key"]), expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return True


def _port_matches(rule: dict[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        start = p.get("port")
        if start is None:
            return True
        if isinstance(start, str):  # a named port never names a port outside the cluster
            continue
        if start <= port <= p.get("endPort", start):
            return True
    return False


def _peer_matches(peer: dict[str, Any], ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    block = peer.get("ipBlock")
    if not block:
        return False  # namespace/pod selectors select pods, not this address
    network = ipaddress.ip_network(block["cidr"])
    if ip.version != network.version or ip not in network:
        return False
    return not any(ip in ipaddress.ip_network(e) for e in block.get("except") or [] if
                   ipaddress.ip_network(e).version == ip.version)


def egress_allowed(policies: list[Policy], pod_labels: dict[str, str], ip: str, port: int,
                   protocol: str = "TCP") -> list[str]:
    """Names of the policies that let this pod reach ip:port; empty when none does (denied),
    or ["<no egress policy>"] when no policy restricts the pod's egress at all."""
    address = ipaddress.ip_address(ip)
    selecting = [p for p in policies if _selects(p["spec"]["podSelector"], pod_labels)
                 and "Egress" in p["spec"].get("policyTypes", ["Ingress"])]
    if not selecting:
        return ["<no egress policy>"]
    allowed = []
    for policy in selecting:
        for rule in policy["spec"].get("egress") or []:
            if not _port_matches(rule, port, protocol):
                continue
            peers = rule.get("to")
            if not peers or any(_peer_matches(peer, address) for peer in peers):
                allowed.append(policy["metadata"]["name"])
                break
    return allowed
