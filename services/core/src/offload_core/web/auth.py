"""API-key authentication: `Authorization: Bearer <key>` maps to a tenant.

Keys are kept only as SHA-256 digests and compared in constant time, so neither a timing
difference nor a memory dump gives a key away.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from offload_core.settings import Settings
from offload_core.web.problems import ProblemError


@dataclass(frozen=True)
class Principal:
    tenant: str
    admin: bool = False


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    def __init__(self, pairs: list[tuple[str, str]], admin_tenants: frozenset[str] = frozenset()) -> None:
        self._entries = [(_digest(key), tenant) for tenant, key in pairs]
        self._admins = admin_tenants

    @classmethod
    def from_settings(cls, settings: Settings, extra: list[tuple[str, str]] | None = None) -> "ApiKeys":
        return cls([*settings.api_key_pairs, *(extra or [])], settings.admin_tenant_set)

    def lookup(self, key: str) -> Principal | None:
        probe = _digest(key)
        found: str | None = None
        for digest, tenant in self._entries:  # no early exit: the same work for every key
            if hmac.compare_digest(digest, probe):
                found = tenant
        if found is None:
            return None
        return Principal(found, admin=found in self._admins)

    def authenticate(self, authorization: str | None) -> Principal:
        challenge = {"WWW-Authenticate": 'Bearer realm="offload"'}
        if not authorization:
            raise ProblemError(401, "Unauthorized", "send your API key as 'Authorization: Bearer <key>'",
                               headers=challenge)
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ProblemError(401, "Unauthorized", "the Authorization header must be 'Bearer <key>'",
                               headers=challenge)
        principal = self.lookup(key.strip())
        if principal is None:
            raise ProblemError(401, "Unauthorized", "the API key is not valid", headers=challenge)
        return principal
