"""offload_worker_ocr"""
