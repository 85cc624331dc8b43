"""The batch coordinator against a real Redis, its clock moved past a batch's completion window:
the lines fed and not finished are cancelled, the lines never fed become `batch_expired` error
lines, the lines that finished keep their output, and the batch ends `expired` with both files.
No worker runs: the lines fed stay queued until the coordinator cancels them, and two are
finished by hand through the worker store's own finish script."""

from __future__ import annotations

import asyncio
import io
import json
import time

import pytest

from offload_core.batches.coordinator import BatchCoordinator
from offload_core.batches.store import BatchRequest, BatchStore
from offload_core.files.store import FileStore
from offload_core.jobs import keys
from offload_core.jobs.store import JobStore, connect
from offload_core.jobs.worker_store import WorkerJobStore, connect_sync
from offload_core.payloads.s3 import BytesSource
from offload_core.types import JobState, JobType

LINES = 10
IN_FLIGHT = 4


class Upload(BytesSource):
    def open(self):
        return io.BytesIO(self.data)


@pytest.fixture
def settings(redis_url: str):
    from offload_core.settings import Settings

    return Settings(env="dev", redis_url=redis_url, batch_max_in_flight_per_tenant=IN_FLIGHT,
                    llm_model="sim-model")


def embed_line(n: int) -> dict:
    return {"custom_id": f"e-{n}", "method": "POST", "url": "/v1/embeddings",
            "body": {"input": f"sentence {n}"}}


def test_a_batch_past_its_window_ends_expired_with_every_line_accounted_for(settings):
    data = "".join(json.dumps(embed_line(n)) + "\n" for n in range(LINES)).encode()

    async def work():
        client = connect(settings)
        try:
            jobs = JobStore(client, settings)
            files = FileStore(client, settings)
            batches = BatchStore(jobs, files)
            coordinator = BatchCoordinator(batches)

            async def read(file_id: str) -> bytes:
                record = await files.get(file_id, "alice")
                return await files.read_range(record, 0, record.bytes)
            _, upload = await files.create_upload("alice", "in.jsonl", "batch", Upload(data))
            batch = await batches.create("alice", BatchRequest(upload.id, "/v1/embeddings", "24h", {}))
            report = await coordinator.tick()
            assert report.fed == IN_FLIGHT  # the in-flight limit: 4 of the 10 lines
            fed = [j.decode() for j in await client.smembers(keys.batch_inflight(batch.id))]

            # Two of the fed lines run and succeed (claimed and finished as a worker would).
            worker = WorkerJobStore(connect_sync(settings), settings)
            for job_id in sorted(fed)[:2]:
                claimed = worker.claim(job_id, "worker-1", JobType.EMBED)
                assert claimed.status == "claimed", claimed
                outcome = worker.finish(claimed.job, "worker-1", JobState.SUCCEEDED,
                                        result={"object": "list", "data": [{"index": 0, "embedding": [0.5]}]})
                assert outcome, "the finish script did not end the job"

            later = time.time() + 25 * 3600  # past the 24 h window
            for _ in range(4):  # collect, stop and cancel, collect the cancels, end
                await coordinator.tick(now=later)
            ended = await batches.get(batch.id, "alice")
            api = await batches.to_api(ended)
            output, errors = [[json.loads(line) for line in (await read(api[field])).splitlines()]
                              for field in ("output_file_id", "error_file_id")]
            states = [(await jobs.get(job_id, "alice")).state for job_id in fed]
            return api, output, errors, states
        finally:
            await client.aclose()

    api, output, errors, states = asyncio.run(work())
    assert api["status"] == "expired" and api["expired_at"] >= api["created_at"]
    assert sorted(states) == sorted([JobState.SUCCEEDED] * 2 + [JobState.CANCELLED] * 2)
    assert len(output) == 2 and all(line["response"]["status_code"] == 200 for line in output)
    # Every line not answered is in the error file as expired: the 2 fed and cancelled, the 6 never fed.
    assert len(errors) == LINES - 2
    assert all(line["error"]["code"] == "batch_expired" for line in errors)
    assert sorted(line["custom_id"] for line in output + errors) == sorted(f"e-{n}" for n in range(LINES))
    assert api["request_counts"] == {"total": LINES, "completed": 2, "failed": LINES - 2}
