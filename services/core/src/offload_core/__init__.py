"""offload_core"""
