"""The payload reference a job record keeps, and SigV4 checked against AWS's published example."""

from __future__ import annotations

import datetime as dt

import pytest

from offload_core.payloads.ref import PayloadRef
from offload_core.payloads.s3 import S3Config, S3PayloadStore
from offload_core.payloads.sigv4 import EMPTY_SHA256, Signer

SHA = "ab" * 32


def test_a_reference_round_trips_as_compact_json():
    ref = PayloadRef(store="s3", bucket="b", key="offload/payloads/j1", sha256=SHA, size=19_923_405)
    text = ref.to_json()
    assert " " not in text and len(text) < 160
    assert PayloadRef.from_json(text) == ref
    assert PayloadRef.from_json(text.encode()) == ref


@pytest.mark.parametrize("text", [
    "", "[]", "{}", '{"store":"gcs","bucket":"b","key":"k","sha256":"' + SHA + '","size":1}',
    '{"store":"s3","bucket":"b","key":"k","sha256":"XYZ","size":1}',
    '{"store":"s3","bucket":"b","key":"k","sha256":"' + SHA + '","size":-1}',
    '{"store":"s3","bucket":"b","key":"","sha256":"' + SHA + '","size":1}',
    '{"store":"s3","bucket":"b","key":"k","sha256":"' + SHA + '","size":true}',
])
def test_anything_else_is_not_a_reference(text):
    with pytest.raises(ValueError):
        PayloadRef.from_json(text)


def test_signature_matches_awss_published_get_object_example():
    # "Example: GET Object", AWS S3 API reference, Signature Version 4 header-based auth.
    signer = Signer("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1")
    headers = signer.sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", {}, {"range": "bytes=0-9"},
                          EMPTY_SHA256, now=dt.datetime(2013, 5, 24, tzinfo=dt.timezone.utc))
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


def _store(addressing: str, endpoint: str = "https://s3.eu-west-1.example.com") -> S3PayloadStore:
    return S3PayloadStore(S3Config(endpoint_url=endpoint, bucket="docs", access_key_id="k", secret_access_key="s",
                                   addressing=addressing))


def test_path_and_virtual_host_addressing_put_the_bucket_where_each_expects_it():
    url, headers = _store("path")._request("GET", "docs", "offload/a b", EMPTY_SHA256)
    assert url == "https://s3.eu-west-1.example.com/docs/offload/a%20b"
    assert headers["host"] == "s3.eu-west-1.example.com"
    url, headers = _store("virtual")._request("GET", "docs", "offload/a b", EMPTY_SHA256)
    assert url == "https://docs.s3.eu-west-1.example.com/offload/a%20b"
    assert headers["host"] == "docs.s3.eu-west-1.example.com"
    url, headers = _store("path", "http://127.0.0.1:9000")._request("GET", "docs", "k", EMPTY_SHA256)
    assert url == "http://127.0.0.1:9000/docs/k" and headers["host"] == "127.0.0.1:9000"
