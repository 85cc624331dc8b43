"""Payloads outside the job record (claim check): large inputs go to S3-compatible object
storage and the record keeps a `PayloadRef` (bucket, key, SHA-256, size); uploads are spooled
once as they arrive, with their size and SHA-256 counted on the way.

    ref.py      PayloadRef, the compact JSON the job record keeps
    errors.py   missing, corrupt, unavailable: what a reader of a payload can meet
    sigv4.py    AWS Signature Version 4, the S3 API's request signing
    s3.py       the S3 store: async put and delete (gateway), sync get and delete (workers)
    spool.py    an upload on its way: memory up to a size, then a temp file, under a disk budget
    metrics.py  bytes put, got and deleted, errors and latency, by store; spooled bytes
"""
