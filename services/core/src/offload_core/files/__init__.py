"""Files (OpenAI's Files API): uploads that batches read, and the output files batches write.

A file's record is a Redis hash; its bytes are a Redis string, or an object in the S3 payload
store when OFFLOAD_PAYLOAD_STORE=s3 (at or above the payload threshold). Its size counts in the
tenant's byte quota while it exists; it expires after OFFLOAD_FILE_RETENTION_SECONDS.
"""
