"""offload_status"""
