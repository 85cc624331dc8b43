"""offload_worker_llm"""
