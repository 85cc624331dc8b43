"""Batches (OpenAI's Batches API): a JSONL file of requests run as ordinary jobs of the tenant.

    lines.py        one line of an input file: parsed and checked as the single-job routes check
    validate.py     the whole file, before anything is queued (errors name their line numbers)
    record.py       the batch's Redis hash and the OpenAI `batch` object
    store.py        create, read, list, cancel (the APIs)
    coordinator.py  the gateway's maintenance task that feeds lines as jobs, collects their
                    outcomes into the batch's output, and ends batches (completed, cancelled,
                    expired) with their output and error files
"""
