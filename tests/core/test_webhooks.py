"""Webhook signatures: a receiver can verify them, and tampering or replay fails."""

from __future__ import annotations

from offload_core.webhooks.signing import sign, verify_signature

BODY = b'{"event":"job.succeeded","job":{"id":"x"}}'


def test_signature_verifies_with_the_same_secret():
    assert verify_signature("s3cret", BODY, sign("s3cret", BODY))


def test_tampered_body_wrong_secret_and_forged_header_fail():
    header = sign("s3cret", BODY)
    assert not verify_signature("s3cret", BODY.replace(b"x", b"y"), header)
    assert not verify_signature("other", BODY, header)
    assert not verify_signature("s3cret", BODY, header.replace("v1=", "v1=0"))
    assert not verify_signature("s3cret", BODY, "garbage")


def test_old_signature_is_rejected_as_a_replay():
    header = sign("s3cret", BODY, timestamp=1_000_000)
    assert verify_signature("s3cret", BODY, header, now=1_000_100)
    assert not verify_signature("s3cret", BODY, header, now=1_000_000 + 3600)
