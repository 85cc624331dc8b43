"""Guarantee: a 503 says only what is true. A submit the store did not confirm may have been
stored all the same (its script can run after the deadline fired), so the answer says so and
how to retry safely: with the same Idempotency-Key, which returns the job if it was stored. A
read changed nothing, and says that.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.platform import PlatformFactory
from tests.support.processes import RedisServer, wait_for


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.mark.slow
def test_503_answers_say_what_may_have_happened_and_how_to_retry(own_redis, tmp_path):
    factory = PlatformFactory(redis_url=own_redis.url, log_dir=tmp_path)
    try:
        platform = factory.start(workers=())
        job_id = platform.submit_llm({"prompt": "stored before", "max_tokens": 4}).json()["id"]
        own_redis.kill()

        submit = platform.submit_llm({"prompt": "during", "max_tokens": 4}, **{"Idempotency-Key": "during-1"})
        assert submit.status_code == 503 and submit.headers["retry-after"] == "5"
        detail = submit.json()["detail"]
        assert "may or may not have been stored" in detail and "same Idempotency-Key" in detail, detail
        assert "nothing was changed" not in detail

        read = httpx.get(f"{platform.status.url}/v1/jobs/{job_id}", headers=platform.headers(), timeout=10)
        assert read.status_code == 503 and "nothing was changed" in read.json()["detail"]

        cancel = httpx.delete(f"{platform.gateway.url}/v1/jobs/{job_id}", headers=platform.headers(), timeout=10)
        assert cancel.status_code == 503 and "may or may not have been made" in cancel.json()["detail"]

        # The advice holds: once Redis is back, the same key gives one job, whatever happened before.
        own_redis.start()
        answers = []
        wait_for(lambda: answers.append(platform.submit_llm({"prompt": "during", "max_tokens": 4},
                                                             **{"Idempotency-Key": "during-1"}))
                 or answers[-1].status_code != 503, 30, "the gateway to reach Redis again")
        first = answers[-1]
        again = platform.submit_llm({"prompt": "during", "max_tokens": 4}, **{"Idempotency-Key": "during-1"})
        assert first.status_code in (200, 202) and again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
    finally:
        factory.stop_all()
