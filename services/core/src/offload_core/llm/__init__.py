"""LLM input: the request an LLM job carries, validated by the gateway and read by worker-llm."""
