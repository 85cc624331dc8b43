"""Document pipelines: OCR, then LLM steps over its text, each step a real job.

    spec.py    what a client asks for (POST /v1/pipelines), checked whole at submit
    plan.py    the jobs that makes, and which waits for which
    store.py   create (one script: jobs/scripts/create_pipeline.lua), read, cancel, retry
    render.py  what an LLM step's job asks its model, from the results it waits for (worker side)

Every job of every step is created at submit; the first is queued, the rest are `waiting`, each
with its queue message kept in its record. When a job succeeds, finish.lua queues, in the same
atomic step, each job whose last wait it was: a crash between two steps cannot strand a
pipeline, and a step's result is written once (the run's compare-and-set). A failure parks the
jobs after it (a retry of the failed job releases them; maintenance/waiting.py cancels them
`retention_seconds` later if nobody does); a cancel has them cancelled. The lease reaper, the
lost-message sweep and reconciliation see pipeline jobs as the ordinary jobs they are.
"""
