"""offload_core: the library every Offload service is built on.

Folders are layers: each imports only the ones below it (tests/core/test_layers.py checks).

    web/            pieces both FastAPI services share: auth, problems, health, lifespan, metrics
    worker/         a worker process: start, the runner, the handler contract, leases, its port
    maintenance/    background work for the whole platform (mover, sweeps, lease reaper, reconciliation)
    webhooks/       signatures, the SSRF guard, delivery
    pipelines/      document pipelines: steps as asked, the jobs they make, their store, step prompts
    fleet/          the worker registry: each worker process's entry and heartbeat, live and lost
    batches/        the Batches API: validation of a file's lines, the store, the coordinator
    files/          the Files API: records, content in Redis or S3, the byte quota, expiry
    jobs/           the record, keys, Lua scripts, the API-side and worker-side stores, job metrics
    queue/          routing, the Celery app and transport, messages, scaling
    payloads/       payloads outside the record: S3 store (SigV4), references, upload spool
    observability/  logs, tracing, Prometheus exposition
    documents/ llm/ probe/ embed/   what OCR, LLM, probe and embed jobs take as input, validated
    types, errors, settings, process_local   the names, exceptions and settings all of them share
"""
