"""`python -m bench.llm_baselines N`: llama.cpp called directly (llama-cpp-python in this
process, the same GGUF and thread count as the worker), N streamed chat completions after one
untimed warm-up. Prints one JSON line per completion: time to first token, tokens/s (tokens over the whole request).

Environment: BENCH_LLM_THREADS, BENCH_LLM_MAX_TOKENS, BENCH_LLM_PROMPT.
"""

from __future__ import annotations

import json
import os
import sys
import time

import llama_cpp

from offload_worker_llm.backends.llamacpp import bundled_model_path


def main() -> None:
    n = int(sys.argv[1])
    llm = llama_cpp.Llama(model_path=str(bundled_model_path()), n_threads=int(os.environ["BENCH_LLM_THREADS"]),
                          n_ctx=2048, verbose=False)
    messages = [{"role": "user", "content": os.environ["BENCH_LLM_PROMPT"]}]
    max_tokens = int(os.environ["BENCH_LLM_MAX_TOKENS"])
    for i in range(n + 1):
        started = time.perf_counter()
        first = None
        tokens = 0
        for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0,
                                                stream=True):
            if chunk["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter()
                tokens += 1
        ended = time.perf_counter()
        if i:  # the first one warms caches
            print(json.dumps({"ttft_s": first - started, "tokens": tokens,
                              "tps": tokens / (ended - started)}), flush=True)


if __name__ == "__main__":
    main()
