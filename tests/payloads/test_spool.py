"""The upload spool: small payloads stay in memory, larger ones go to one temp file; size and
SHA-256 are counted on the way; the limit, the disk budget and cleanup hold."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os

import pytest

from offload_core.payloads.spool import DiskBudget, SpooledPayload, SpoolFull, SpoolLimitExceeded

KiB = 1024


def _spool(tmp_path, *, limit=1024 * KiB, memory=64 * KiB, budget=None) -> SpooledPayload:
    return SpooledPayload(limit=limit, memory_bytes=memory, budget=budget or DiskBudget(10 * 1024 * KiB),
                          directory=str(tmp_path))


def test_a_small_payload_stays_in_memory_and_knows_its_size_and_sha256(tmp_path):
    spool = _spool(tmp_path)
    spool.write(b"hello ")
    spool.write(b"world")
    spool.seal()
    assert spool.path is None and list(tmp_path.iterdir()) == []
    assert spool.size == 11 and spool.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert spool.read_all() == b"hello world"
    with spool.open() as f:
        assert f.read() == b"hello world"


def test_a_larger_payload_rolls_over_to_one_file_written_once(tmp_path):
    data = os.urandom(300 * KiB)
    budget = DiskBudget(1024 * KiB)
    spool = _spool(tmp_path, budget=budget)

    async def stream() -> None:
        for start in range(0, len(data), 10 * KiB):
            await spool.awrite(data[start:start + 10 * KiB])

    asyncio.run(stream())
    spool.seal()
    assert spool.path is not None and spool.path.parent == tmp_path
    assert spool.path.read_bytes() == data  # the memory part went to the file first, in order
    assert spool.sha256 == hashlib.sha256(data).hexdigest() and spool.size == len(data)
    assert budget.used == len(data)
    with spool.open() as a, spool.open() as b:  # independent readers, each from the start
        assert a.read(5) == data[:5] and b.read() == data
    spool.cleanup()
    assert list(tmp_path.iterdir()) == [] and budget.used == 0
    spool.cleanup()  # twice is fine
    with pytest.raises(ValueError):
        spool.read_all()


def test_the_limit_is_refused_on_the_first_byte_beyond_it(tmp_path):
    spool = _spool(tmp_path, limit=100 * KiB)
    spool.write(b"x" * 100 * KiB)  # exactly the limit is fine
    with pytest.raises(SpoolLimitExceeded):
        spool.write(b"x")
    spool.cleanup()
    assert list(tmp_path.iterdir()) == []


def test_the_disk_budget_is_shared_and_given_back(tmp_path):
    budget = DiskBudget(200 * KiB)
    first, second = _spool(tmp_path, budget=budget), _spool(tmp_path, budget=budget)
    first.write(b"a" * 150 * KiB)
    with pytest.raises(SpoolFull):
        second.write(b"b" * 100 * KiB)
    assert budget.used == 150 * KiB
    first.cleanup()
    second.cleanup()
    assert budget.used == 0
    third = _spool(tmp_path, budget=budget)
    third.write(b"c" * 190 * KiB)  # room again
    third.cleanup()


def test_a_spool_nobody_cleaned_up_still_removes_its_file(tmp_path):
    spool = _spool(tmp_path, memory=0)
    spool.write(b"abandoned")
    path = spool.seal().path
    assert path.exists()
    del spool
    gc.collect()
    assert not path.exists()


def test_the_sha256_is_only_known_once_sealed(tmp_path):
    spool = _spool(tmp_path)
    spool.write(b"x")
    with pytest.raises(ValueError):
        spool.sha256
    spool.seal()
    with pytest.raises(ValueError):
        spool.write(b"more")
