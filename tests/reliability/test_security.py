"""Security guarantees, each tried the way an attacker would:

- every endpoint but health requires a key (from the services' own OpenAPI schemas);
- tenants × endpoints: no cross-tenant read, cancel or retry;
- callbacks to loopback, link-local, private addresses and names that resolve to them are
  refused, at submit or at delivery, and a redirect is never followed;
- webhook signatures verify, and fail on any tampering;
- no key or secret appears in logs, problem details or traces;
- the rate limit and the queued-job quota hold under concurrent clients.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from offload_core.webhooks.signing import SIGNATURE_HEADER, verify_signature
from tests.reliability.ledger import wait_all_terminal
from tests.reliability.traffic import Submitter, in_parallel
from tests.support.processes import wait_for
from tests.telemetry.otlp_receiver import OtlpReceiver

SECRETS = {"alice": "alice-webhook-secret-4f1c9e2d7a", "bob": "bob-webhook-secret-8b3e6d0f12"}
LLM_KEY = "sk-llm-upstream-key-5d2a7c91e4"
SHORT = {"prompt": "Hi", "max_tokens": 2, "temperature": 0}
SOME_ID = "0b7c1f4e-0000-4000-8000-000000000000"
PUBLIC = {"/healthz", "/readyz"}


class Hook:
    """An HTTP receiver on a loopback address: records what it gets, answers `status`."""

    def __init__(self, host: str, status: int = 204, location: str | None = None) -> None:
        self.got: list[tuple[dict, bytes]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.got.append((dict(self.headers), body))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text[:200])
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


@pytest.mark.slow
def test_keys_tenants_callbacks_signatures_and_secrets(platform_factory, store, figures):
    otlp = OtlpReceiver().start()
    sink = Hook("127.0.0.1")  # internal and not allow-listed: must never be called
    redirector = Hook("127.0.0.2", status=302, location=sink.url)  # allow-listed, redirects inward
    try:
        platform = platform_factory.start(workers=("llm",), env={
            "OFFLOAD_WEBHOOK_SECRETS": ",".join(f"{t}:{s}" for t, s in SECRETS.items()),
            "OFFLOAD_WEBHOOK_ALLOWLIST": "127.0.0.2/32", "OFFLOAD_WEBHOOK_MAX_ATTEMPTS": "1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OFFLOAD_PROBE_JOBS": "all",  # alice's failed job below is a probe told to fail
        }, worker_env={"llm": {"OFFLOAD_LLM_API_KEY": LLM_KEY}})
        gw, st, h = platform.gateway.url, platform.status.url, platform.headers
        problems: list[str] = []

        # 1. Every endpoint in either schema, but health, refuses a request without a key.
        unauthenticated = 0
        for base in (gw, st):
            for path, methods in httpx.get(f"{base}/openapi.json").json()["paths"].items():
                if path in PUBLIC:
                    continue
                for method in methods:
                    r = httpx.request(method.upper(), base + path.replace("{job_id}", SOME_ID), timeout=10)
                    problems.append(r.text)
                    _problem(r, 401)
                    unauthenticated += 1

        # 2. Tenants x endpoints. Alice owns a finished job and a failed one.
        done = platform.submit_llm(SHORT).json()["id"]
        failed = platform.http_post("/v1/jobs/probe", json={"fail": "permanent"}).json()["id"]
        wait_all_terminal(store, [done, failed], timeout=60)
        matrix: dict[tuple[str, str], int] = {}
        for tenant in ("bob", "ops"):
            for name, method, url in [
                ("read", "GET", f"{st}/v1/jobs/{done}"), ("result", "GET", f"{st}/v1/jobs/{done}/result"),
                ("events", "GET", f"{st}/v1/jobs/{done}/events"), ("cancel", "DELETE", f"{gw}/v1/jobs/{failed}"),
                ("retry", "POST", f"{gw}/v1/jobs/{failed}/retry"),
            ]:
                r = httpx.request(method, url, headers=h(tenant), timeout=10)
                problems.append(r.text)
                matrix[(tenant, name)] = r.status_code
            listed = httpx.get(f"{st}/v1/jobs", headers=h(tenant), timeout=10).json()["jobs"]
            assert [j["id"] for j in listed] == [], tenant
        assert all(code == 404 for (tenant, _), code in matrix.items() if tenant == "bob"), matrix
        # An admin tenant (OFFLOAD_ADMIN_TENANTS) may requeue anyone's failed job, and nothing else.
        assert {k: v for k, v in matrix.items() if k[0] == "ops"} == {
            ("ops", "read"): 404, ("ops", "result"): 404, ("ops", "events"): 404, ("ops", "cancel"): 404,
            ("ops", "retry"): 202}, matrix
        wait_all_terminal(store, [failed], timeout=60)

        # 3. Callbacks to internal places. Refused at submit (422) when the URL says so; names and
        # spellings that only resolve to internal addresses are refused when the webhook is sent.
        at_submit, at_delivery = [], []
        port = sink.server.server_address[1]
        for url in [f"http://127.0.0.1:{port}/hook", f"http://localhost:{port}/", "http://169.254.169.254/latest/meta-data",
                    "http://10.0.0.5/", "http://192.168.1.10/", "http://172.16.0.1/", "http://[::1]/",
                    "http://[fd00::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://vm/",
                    "http://metadata.google.internal/", f"http://127.1:{port}/hook", f"http://0x7f.0.0.1:{port}/hook",
                    f"http://2130706433:{port}/hook", "ftp://example.com/", f"http://user:pw@127.0.0.2:{port}/"]:
            r = platform.submit_llm({**SHORT, "callback_url": url})
            problems.append(r.text)
            if r.status_code == 422:
                at_submit.append(url)
            else:
                assert r.status_code == 202, (url, r.status_code, r.text)
                at_delivery.append((url, r.json()["id"]))
        for url, job_id in at_delivery:
            wait_for(lambda j=job_id: (platform.job(j).get("webhook") or {}).get("state") in ("refused", "failed"),
                     60, f"the webhook to {url} to be refused")
            assert platform.job(job_id)["webhook"]["state"] == "refused", (url, platform.job(job_id)["webhook"])

        # A redirect from an allowed host towards an internal one is not followed.
        redirected = platform.submit_llm({**SHORT, "callback_url": redirector.url}).json()["id"]
        wait_for(lambda: (platform.job(redirected).get("webhook") or {}).get("state") == "failed", 60, "webhook")
        assert "redirect" in platform.job(redirected)["webhook"]["detail"]
        assert len(redirector.got) == 1 and sink.got == [], "the internal address was called"

        # 4. The signature verifies with alice's secret and with nothing else.
        headers, body = redirector.got[0]
        signature = headers[SIGNATURE_HEADER]
        assert verify_signature(SECRETS["alice"], body, signature)
        tampered = body.replace(b'"succeeded"', b'"failed"')
        assert tampered != body and not verify_signature(SECRETS["alice"], tampered, signature)
        assert not verify_signature(SECRETS["bob"], body, signature)
        t, v1 = signature.split(",")
        assert not verify_signature(SECRETS["alice"], body, f"t={int(t[2:]) + 1},{v1}")
        assert not verify_signature(SECRETS["alice"], body, signature, now=int(t[2:]) + 3600)  # a replay, later

        # 5. Secrets appear nowhere: logs of every service, problem bodies, span attributes.
        wrong = "Bearer guessed-key-that-looks-real-7Yx2"
        problems.append(httpx.get(f"{st}/v1/jobs", headers={"Authorization": wrong}, timeout=10).text)
        problems.append(httpx.post(f"{gw}/v1/jobs/llm", json=SHORT, headers={"Authorization": wrong}, timeout=10).text)
        time.sleep(1.0)  # the last spans leave the batch processors (100 ms schedule)
        secrets = [*platform.keys.values(), *SECRETS.values(), LLM_KEY, wrong.split()[1]]
        logs = "".join(svc.log_text() for svc in platform_factory.services)
        spans = json.dumps([s.attributes for s in otlp.spans], default=str)
        leaks = [(where, s[:6] + "...") for s in secrets
                 for where, text in (("logs", logs), ("problems", "".join(problems)), ("traces", spans)) if s in text]
        assert otlp.spans, "no spans were exported: the trace check proved nothing"
        assert not leaks, leaks
        figures.record("9-security", endpoints_without_key_401=unauthenticated,
                       cross_tenant_requests_404=sum(1 for (t, _), c in matrix.items() if t == "bob"),
                       callbacks_refused_at_submit=len(at_submit), callbacks_refused_at_delivery=len(at_delivery),
                       redirects_followed=len(sink.got), spans_scanned=len(otlp.spans),
                       log_bytes_scanned=len(logs), leaks=len(leaks))
    finally:
        sink.stop()
        redirector.stop()
        otlp.stop()


def _windows(answers, store) -> Counter:
    """Accepted submissions per rate-limit window (the minute of the job's creation)."""
    out: Counter = Counter()
    for a in answers:
        if a.status == 202:
            created = float(store.hget(f"offload:job:{a.job_id}", "created_at"))
            out[int(created // 60)] += 1
    return out


@pytest.mark.slow
@pytest.mark.parametrize("limit", ["rate", "quota"])
def test_rate_limit_and_quota_hold_under_concurrent_clients(platform_factory, store, limit, figures):
    cap = 25
    env = ({"OFFLOAD_RATE_LIMIT_PER_MINUTE": str(cap)} if limit == "rate"
           else {"OFFLOAD_MAX_QUEUED_PER_TENANT": str(cap), "OFFLOAD_RATE_LIMIT_PER_MINUTE": "100000"})
    platform = platform_factory.start(workers=(), env=env)
    submit = Submitter(platform)
    answers = in_parallel([lambda: submit.llm(SHORT)] * (cap * 4), threads=8)
    codes = Counter(a.status for a in answers)
    assert set(codes) <= {202, 429}, codes
    assert all(a.retry_after and int(a.retry_after) > 0 for a in answers if a.status == 429)
    if limit == "rate":
        windows = _windows(answers, store)
        assert max(windows.values()) <= cap, windows  # never more than the rate in one window
        if len(windows) == 1:
            assert codes[202] == cap, codes
    else:
        assert codes[202] == cap, codes
        assert int(store.hget("offload:tenant:alice:usage", "active")) == cap
    figures.record(f"9-{limit}-limit", clients=8, requests=cap * 4, limit=cap, accepted=codes[202],
                   refused_429=codes[429])
