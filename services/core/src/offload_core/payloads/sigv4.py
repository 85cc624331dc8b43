"""AWS Signature Version 4 for the S3 API, header-signed (the `Authorization` header).

What S3 wants, from AWS's "Signature Calculations for the Authorization Header":
the path is URI-encoded once (slashes kept), the query sorted and encoded, every `x-amz-*`
header signed along with `host`, and `x-amz-content-sha256` carries the payload's SHA-256 (hex)
so the server can check the body it received against the one we signed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ALGORITHM = "AWS4-HMAC-SHA256"


def uri_encode(text: str, *, keep_slash: bool) -> str:
    """AWS's UriEncode: every byte but A-Z a-z 0-9 - _ . ~ percent-encoded, uppercase hex."""
    return quote(text, safe="/~" if keep_slash else "~")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class Signer:
    """Signs requests for one set of credentials, region and service; the day's signing key is
    derived once a day, not once a request."""

    def __init__(self, access_key_id: str, secret_access_key: str, region: str, service: str = "s3") -> None:
        self.access_key_id = access_key_id
        self._secret = secret_access_key
        self.region = region
        self.service = service
        self._day_key: tuple[str, bytes] = ("", b"")

    def __repr__(self) -> str:  # never the secret
        return f"Signer(region={self.region!r}, service={self.service!r})"

    def _signing_key(self, day: str) -> bytes:
        if self._day_key[0] != day:
            key = _hmac(("AWS4" + self._secret).encode(), day)
            for part in (self.region, self.service, "aws4_request"):
                key = _hmac(key, part)
            self._day_key = (day, key)
        return self._day_key[1]

    def sign(self, method: str, host: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
             payload_sha256: str, now: dt.datetime | None = None) -> dict[str, str]:
        """The headers to send: `headers` plus host, x-amz-date, x-amz-content-sha256 and
        Authorization. `path` is the unencoded path (e.g. "/bucket/a key"); `host` is the Host
        header exactly as sent (with the port when it is not the scheme's default)."""
        now = now or dt.datetime.now(dt.timezone.utc)
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        out = {**headers, "host": host, "x-amz-date": stamp, "x-amz-content-sha256": payload_sha256}
        canonical_headers = {name.lower(): " ".join(str(value).split()) for name, value in out.items()}
        signed = sorted(canonical_headers)
        canonical_query = "&".join(
            f"{uri_encode(k, keep_slash=False)}={uri_encode(v, keep_slash=False)}" for k, v in sorted(query.items()))
        canonical_request = "\n".join([
            method.upper(),
            uri_encode(path, keep_slash=True),
            canonical_query,
            "".join(f"{name}:{canonical_headers[name]}\n" for name in signed),
            ";".join(signed),
            payload_sha256,
        ])
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest()])
        signature = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        out["authorization"] = (f"{ALGORITHM} Credential={self.access_key_id}/{scope}, "
                                f"SignedHeaders={';'.join(signed)}, Signature={signature}")
        return out
