"""offload_gateway"""
