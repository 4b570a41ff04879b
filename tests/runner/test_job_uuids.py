"""Job UUIDs: version 7, ordered by their creation time, so new jobs go to the end of the jobs' unique index."""
from __future__ import annotations

import time
import uuid

from runner.engine.invoke import new_job_uuid


def test_a_job_uuid_is_a_version_7_uuid_holding_its_creation_time():
    before = time.time_ns() // 1_000_000
    made = uuid.UUID(new_job_uuid())
    after = time.time_ns() // 1_000_000

    assert (made.version, made.variant) == (7, uuid.RFC_4122)
    assert before <= made.int >> 80 <= after


def test_job_uuids_sort_by_their_creation_time():
    made = [new_job_uuid(at_ms) for at_ms in (1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_999, 1_800_000_000_000)]

    assert sorted(made) == made
    assert [uuid.UUID(u).int >> 80 for u in made] == [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_999, 1_800_000_000_000]


def test_job_uuids_made_in_the_same_millisecond_differ():
    made = {new_job_uuid(1_700_000_000_000) for _ in range(1000)}

    assert len(made) == 1000
