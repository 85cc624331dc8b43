"""Guarantee: whatever a client sends, the APIs answer with a documented status, never a 5xx,
and every error is an RFC 9457 problem (application/problem+json).

schemathesis generates requests from each service's own OpenAPI schema (valid and invalid
bodies, parameters and headers), with a valid API key and with bad ones, for a bounded number
of cases per operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

VALID_KEY_EXAMPLES = 40  # per operation and generation mode (valid and invalid data)
BAD_KEY_EXAMPLES = 8
AUTH = {"missing": None, "wrong": "Bearer not-a-key-but-long-enough-0000"}


def _exercise(case, platform, key: str) -> None:
    headers = dict(case.headers or {})
    headers.pop("Authorization", None)
    headers.pop("authorization", None)
    if key == "valid":
        headers["Authorization"] = f"Bearer {platform.keys['alice']}"
    elif AUTH[key] is not None:
        headers["Authorization"] = AUTH[key]
    case.headers = headers
    response = case.call(timeout=30)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance, content_type_conformance])
    if 400 <= response.status_code < 600:
        assert response.headers.get("content-type", [""])[0].startswith("application/problem+json"), (
            response.status_code, response.text[:300])
        body = response.json()
        assert body["status"] == response.status_code and body["title"] and body["detail"], body
    if key != "valid" and case.path.startswith("/v1/"):
        assert response.status_code == 401, (case.method, case.path, response.status_code)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["valid", "missing", "wrong"])
@pytest.mark.parametrize("service", ["gateway", "status"])
def test_fuzzed_requests_get_no_5xx_and_problem_details(apis, service, key, figures):
    base = getattr(apis, service).url
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if key == "valid" else [GenerationMode.POSITIVE]
    examples = VALID_KEY_EXAMPLES if key == "valid" else BAD_KEY_EXAMPLES
    calls, failures = 0, []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in modes:
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None, phases=[Phase.explicit, Phase.generate])
            def fuzz(case) -> None:
                nonlocal calls
                calls += 1
                _exercise(case, apis, key)

            try:
                fuzz()
            except Unsatisfiable:
                pass  # nothing of this operation can be made invalid (no parameters, or free text)
            except Exception as exc:  # noqa: BLE001 - gather every operation's failure, then report
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}): {exc}"[:1500])
    figures.record(f"7-fuzz-{service}-{key}-key", requests=calls, failures=len(failures))
    assert not failures, "\n\n".join(failures)
