"""The peers a worker-path benchmark compares Offload with, each a small app of its own.

Each module here is what a user of that library would write: one no-op task that takes the
same small request an Offload LLM job carries and returns a small result, recorded by the
library's own result store in the same Redis. `python -m bench.systems.<name> prefill URL N`
queues N of them with the library's own client. The peers other than Celery run from a
separate venv (`make bench` builds it; their versions are pinned in bench/peers.txt): they are
not part of Offload's dependency set.
"""

PAYLOAD = {"messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 16,
           "temperature": 0.0}


def noop_result(payload: dict) -> dict:
    return {"ok": True, "messages": len(payload.get("messages", ()))}
