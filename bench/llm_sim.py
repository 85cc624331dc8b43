"""A streaming OpenAI-compatible server that stands in for a GPU server's latency, not its compute.

`POST /v1/chat/completions` with `stream: true` answers after a fixed time to first token, then
one token every `itl` seconds, `max_tokens` tokens in all (finish reason `length`), then a usage
chunk (prompt tokens: the words of the messages; completion tokens: the tokens sent) and
`[DONE]`. Concurrency is unlimited: every request streams at once, as on a server with room for
all of them. It counts the requests in flight (now and at the peak) for tests of a global cap.

A request whose last message starts with `HANG` sends two tokens, then nothing, until its client
goes away: a server that hangs mid-stream. One whose last message starts with `FAIL-ONCE` is
refused (400, OpenAI's error body) the first time that message is seen, and answered after: a
request the server rejects, then accepts when sent again (a model reloaded, a fixed deployment).

`POST /v1/embeddings` answers after the same time to first token with OpenAI's embeddings object:
for each input a unit vector of `EMBED_DIM` floats derived from the text's SHA-256 (the same text
always gets the same vector), and usage (prompt tokens: the inputs' words).

    python -m bench.llm_sim --port 8089 --ttft 0.1 --itl 0.02

Plain asyncio HTTP/1.1 (keep-alive, chunked answers) so that the simulator's own cost is small
next to what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import threading
from dataclasses import dataclass, field

MODEL = "sim-model"
EMBED_DIM = 8


def embedding_of(text: str) -> list[float]:
    """The simulator's vector for a text: EMBED_DIM numbers from its SHA-256, scaled to length 1."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [b - 127.5 for b in digest[:EMBED_DIM]]
    norm = sum(x * x for x in raw) ** 0.5
    return [round(x / norm, 6) for x in raw]


@dataclass
class Counters:
    requests: int = 0
    in_flight: int = 0
    peak: int = 0
    completed: int = 0
    models: dict[str, int] = field(default_factory=dict)
    bodies: list[dict] = field(default_factory=list)  # the last few request bodies, for tests

    def snapshot(self) -> dict:
        return {"requests": self.requests, "in_flight": self.in_flight, "peak": self.peak,
                "completed": self.completed, "models": dict(self.models)}


class Simulator:
    def __init__(self, *, ttft: float = 0.1, itl: float = 0.02, host: str = "127.0.0.1", port: int = 0,
                 keep_bodies: int = 100) -> None:
        self.ttft, self.itl, self.host, self.port = ttft, itl, host, port
        self.counters = Counters()
        self.keep_bodies = keep_bodies
        self._refused: set[str] = set()  # FAIL-ONCE messages refused once already
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- running -----------------------------------------------------------------------------

    async def serve(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> "Simulator":
        """Serve from a thread of this process (tests); returns once it listens."""
        ready = threading.Event()

        def run() -> None:
            self._loop = loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)  # the shutdown below gathers the connections' tasks on it
            loop.run_until_complete(self.serve())
            ready.set()
            loop.run_forever()
            # Stopped: end every connection's task, then the loop.
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="llm-sim", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # -- HTTP ------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "GET" and path.endswith("/stats"):
                    self._json(writer, 200, self.counters.snapshot())
                elif method == "GET" and path.endswith("/models"):
                    self._json(writer, 200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
                elif method == "POST" and path.endswith("/chat/completions"):
                    await self._complete(reader, writer, json.loads(body or b"{}"))
                elif method == "POST" and path.endswith("/embeddings"):
                    await self._embed(writer, json.loads(body or b"{}"))
                else:
                    self._json(writer, 404, {"error": {"message": f"no {method} {path}"}})
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _json(self, writer: asyncio.StreamWriter, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (status, len(data), data))

    async def _complete(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: dict) -> None:
        c = self.counters
        c.requests += 1
        messages = body.get("messages") or []
        last_message = str(messages[-1].get("content", "")) if messages else ""
        if last_message.startswith("FAIL-ONCE") and last_message not in self._refused:
            self._refused.add(last_message)
            self._json(writer, 400, {"error": {"message": "refused once (FAIL-ONCE)", "type": "invalid_request_error"}})
            return
        c.in_flight += 1
        c.peak = max(c.peak, c.in_flight)
        model = str(body.get("model", MODEL))
        c.models[model] = c.models.get(model, 0) + 1
        c.bodies = (c.bodies + [body])[-self.keep_bodies:]
        try:
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
            hang = last_message.startswith("HANG")
            n = int(body.get("max_tokens") or 16)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(self.ttft)
            for i in range(n):
                if i:
                    await asyncio.sleep(self.itl)
                if hang and i == 2:
                    await reader.read()  # nothing more is sent: until the client goes away (EOF)
                    return
                last = i == n - 1
                self._event(writer, {"id": "sim", "object": "chat.completion.chunk", "model": model, "choices": [
                    {"index": 0, "delta": {"content": f" t{i}"}, "finish_reason": "length" if last else None}]})
                await writer.drain()
            self._event(writer, {"id": "sim", "object": "chat.completion.chunk", "model": model, "choices": [],
                                 "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                                           "total_tokens": prompt_tokens + n}})
            self._chunk(writer, b"data: [DONE]\n\n")
            writer.write(b"0\r\n\r\n")
            c.completed += 1
        finally:
            c.in_flight -= 1

    async def _embed(self, writer: asyncio.StreamWriter, body: dict) -> None:
        c = self.counters
        c.requests += 1
        c.bodies = (c.bodies + [body])[-self.keep_bodies:]
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            self._json(writer, 400, {"error": {"message": "'input' must be a string or a list of strings"}})
            return
        await asyncio.sleep(self.ttft)
        data = [{"object": "embedding", "index": i, "embedding": embedding_of(t)} for i, t in enumerate(texts)]
        words = sum(len(t.split()) for t in texts)
        self._json(writer, 200, {"object": "list", "data": data, "model": str(body.get("model", MODEL)),
                                 "usage": {"prompt_tokens": words, "total_tokens": words}})
        c.completed += 1

    def _event(self, writer: asyncio.StreamWriter, payload: dict) -> None:
        self._chunk(writer, b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n")

    @staticmethod
    def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.llm_sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--ttft", type=float, default=0.1, help="seconds to the first token")
    parser.add_argument("--itl", type=float, default=0.02, help="seconds between tokens")
    args = parser.parse_args()
    sim = Simulator(ttft=args.ttft, itl=args.itl, host=args.host, port=args.port)

    async def run() -> None:
        await sim.serve()
        print(f"llm-sim listening on {sim.base_url} (ttft {args.ttft}s, {args.itl * 1000:.0f} ms/token)", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
