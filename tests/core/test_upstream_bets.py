"""Where Offload leans on another project's internals, a test that fails loudly, naming the bet,
when an upgrade breaks it (docs/architecture.md, "Bets on other projects"). The behaviour each bet
buys is tested elsewhere too (named per test); these check the ground it stands on."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import redis
from celery import Celery
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from prometheus_client import values
from prometheus_client.mmap_dict import MmapedDict

from offload_core.jobs import keys, scripts
from offload_core.queue.broker import TRANSPORT
from offload_core.queue.messages import build_task_message
from offload_core.queue.routing import TASK_NAMES
from offload_core.types import JobType


def _bet(name: str, checked: str) -> str:
    return (f"the bet on {name} (checked against {checked}) no longer holds with the installed versions "
            f"(celery {version('celery')}, kombu {version('kombu')}, fastapi {version('fastapi')}, "
            f"starlette {version('starlette')}, prometheus-client {version('prometheus-client')}): "
            "see docs/architecture.md, 'Bets on other projects'")


def test_kombu_takes_the_hand_built_message_as_its_own_and_records_it_as_unacknowledged(redis_url):
    """Bet 1 (queue/messages.py) and bet 3 (the `unacked` hash the sweep reads). Behaviour:
    tests/core/test_messages.py, tests/core/test_sweeper.py, every e2e test."""
    why = _bet("Celery's protocol-2 message as kombu's Redis transport stores it", "celery 5.7.0, kombu 5.7.0")
    job_id, tenant = "0e0c2b9e-7a47-4bb5-8d3c-1f2e3d4c5b6a", "acme"
    app = Celery("bets", set_as_current=False)
    r = redis.Redis.from_url(redis_url)
    r.lpush("llm.normal", build_task_message(app, job_id=job_id, job_type=JobType.LLM, queue="llm.normal",
                                             tenant=tenant, headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}))
    with Connection(redis_url, transport=TRANSPORT) as conn:
        queue = Queue("llm.normal", Exchange("llm.normal", type="direct"), routing_key="llm.normal")
        message = queue(conn.default_channel).get(no_ack=False)
        assert message is not None, why
        assert message.headers["task"] == TASK_NAMES[JobType.LLM] and message.headers["id"] == job_id, why
        assert message.headers["traceparent"].startswith("00-111"), why
        args, kwargs, embed = message.decode()
        assert (args, kwargs) == ([job_id, tenant], {}) and "callbacks" in embed, why
        assert message.delivery_info["routing_key"] == "llm.normal", why
        # Delivered, not acknowledged: kombu keeps it in the hash Offload names, where the
        # lost-message sweep's script finds its job id.
        assert kombu_redis.Channel.unacked_key == keys.KOMBU_UNACKED, why
        ids = scripts.MESSAGE_IDS.register(r)(source_key=keys.KOMBU_UNACKED, kind="hash", position="0", count=10)
        assert job_id.encode() in ids[1:], why
        message.ack()


def test_the_redis_transport_qos_still_has_the_methods_offload_overrides():
    """Bet 2 (queue/broker.py). Behaviour: tests/core/test_broker.py, tests/reliability/test_redis_outage.py."""
    why = _bet("kombu's Redis QoS (ack, reject, restore_by_tag(leftmost=))", "kombu 5.7.0")
    assert "leftmost" in inspect.signature(kombu_redis.QoS.restore_by_tag).parameters, why
    for method in ("ack", "reject"):
        assert list(inspect.signature(getattr(kombu_redis.QoS, method)).parameters)[:2] == ["self", "delivery_tag"], why
    assert kombu_redis.Channel.QoS is kombu_redis.QoS and issubclass(kombu_redis.QoS, virtual.QoS), why
    # The transport options celery_app.py sets are still read by the channel.
    for option in ("visibility_timeout", "queue_order_strategy", "unacked_restore_interval",
                   "unacked_restore_throttle", "unacked_mutex_expire", "health_check_interval"):
        assert option in kombu_redis.Channel.from_transport_options, why


def test_a_routers_routes_can_join_the_app_as_they_are():
    """Bet 4 (web/routers.py: add_routes instead of include_router). Behaviour: the e2e tests,
    test_unknown_routes_and_wrong_methods_are_problems_that_name_the_fix."""
    from offload_core.web.routers import add_routes

    why = _bet("APIRouter routes carrying their prefix from declaration", "fastapi 0.165.0")
    router = APIRouter(prefix="/v1/things", tags=["things"])

    @router.get("/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    assert [getattr(route, "path", None) for route in router.routes] == ["/v1/things/{thing_id}"], why
    app = FastAPI()
    add_routes(app, router)
    client = TestClient(app)
    assert client.get("/v1/things/7").json() == {"id": "7"}, why
    assert "/v1/things/{thing_id}" in client.get("/openapi.json").json()["paths"], why


def test_starlette_puts_the_matched_route_in_the_scope():
    """Bet 5 (web/observability.py reads scope["route"] for the route template of metrics and
    spans). Behaviour: tests/telemetry/test_http_metrics.py."""
    why = _bet("Starlette's scope['route']", "starlette 1.10.0, fastapi 0.165.0")
    seen: list[str | None] = []
    app = FastAPI()

    @app.get("/v1/jobs/{job_id}")
    async def job(job_id: str) -> dict[str, str]:
        return {}

    class Capture:
        def __init__(self, inner) -> None:
            self.inner = inner

        async def __call__(self, scope, receive, send) -> None:
            await self.inner(scope, receive, send)
            seen.append(getattr(scope.get("route"), "path", None))

    app.add_middleware(Capture)
    TestClient(app).get("/v1/jobs/abc")
    assert seen == ["/v1/jobs/{job_id}"], why


def test_prometheus_client_multiprocess_files_can_still_be_folded(tmp_path):
    """Bet 6 (observability/multiprocess.py folds dead processes' files with prometheus_client's
    MmapedDict and re-chooses the value class). Behaviour: tests/telemetry/test_multiprocess_metrics.py."""
    why = _bet("prometheus_client's multiprocess files", "prometheus-client 0.26.0")
    assert callable(getattr(values, "get_value_class", None)) and hasattr(values, "ValueClass"), why
    path = str(tmp_path / "counter_1.db")
    d = MmapedDict(path)
    d.write_value("key", 2.5, 0.0)
    assert d.read_value("key")[0] == 2.5, why
    d.close()
    assert [(k, v) for k, v, *_ in MmapedDict.read_all_values_from_file(path)] == [("key", 2.5)], why


def test_uvicorns_httptools_protocol_still_has_what_the_guarded_protocol_uses():
    """Bet 8 (web/http_protocol.py subclasses uvicorn's HttpToolsProtocol for header and body
    read timeouts). Behaviour: tests/reliability/test_request_limits.py; here a real uvicorn
    server with the subclass answers 408 to headers that do not arrive in time."""
    import socket
    import threading
    import time

    import uvicorn
    from uvicorn.protocols.http import httptools_impl

    from offload_core.settings import Settings
    from offload_core.web.http_protocol import protocol_for
    from tests.support.processes import free_port

    why = _bet("uvicorn's HttpToolsProtocol internals", f"uvicorn 0.54.0 (installed {version('uvicorn')})")
    base = httptools_impl.HttpToolsProtocol
    for method in ("connection_made", "connection_lost", "data_received", "on_message_begin", "on_url", "on_header",
                   "on_headers_complete", "on_message_complete", "send_400_response"):
        assert callable(getattr(base, method, None)), why
    cycle_init = inspect.getsource(httptools_impl.RequestResponseCycle.__init__)
    for attribute in ("self.disconnected", "self.message_event", "self.response_started", "self.response_complete"):
        assert attribute in cycle_init, why
    assert "self.cycle = RequestResponseCycle(" in inspect.getsource(base.on_headers_complete), why
    assert "send_400_response" in inspect.getsource(base.data_received), why  # a callback's error lands there

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None,
                            http=protocol_for(Settings(env="dev", http_header_timeout_seconds=0.5)))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, why
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), (why, answer[:100])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 431"), why
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 204"), why
    finally:
        server.should_exit = True
        thread.join(10)


def test_redis_py_connections_still_take_packed_commands_and_give_raw_replies(redis_url):
    """Bet 9 (offload_status/event_hub.py sends its XREAD as bytes it keeps encoded and reads the
    raw replies). Behaviour: tests/reliability/test_event_streams.py."""
    import asyncio

    from offload_core.settings import Settings
    from offload_core.web.redis_pool import dedicated_connection
    from offload_status.event_hub import ReadCommand, _stream_replies

    why = _bet("redis-py's Connection.send_packed_command / read_response", f"redis 8.1.0 (installed {version('redis')})")
    r = redis.Redis.from_url(redis_url)
    r.xadd("bets:events", {"kind": "state", "data": "{}"}, id="1-1")

    async def read():
        connection = dedicated_connection(Settings(env="dev", redis_url=redis_url))
        command = ReadCommand()
        command.set("bets:events", (0, 0))
        try:
            await connection.send_packed_command(command.packed())
            client_id = await connection.read_response()
            return client_id, await connection.read_response()
        finally:
            await connection.disconnect()

    client_id, reply = asyncio.run(read())
    assert isinstance(client_id, int), why
    [(key, rows)] = list(_stream_replies(reply))
    assert key == b"bets:events" and rows[0][0] == b"1-1" and rows[0][1] == [b"kind", b"state", b"data", b"{}"], why
