"""Embedding jobs: the request the gateway validates and the LLM worker reads again."""
