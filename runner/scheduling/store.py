"""APScheduler's SQLAlchemy job store, remembering what it unpickled so a burst of due jobs is not restored from scratch.

When 10,000 schedules fall due on the same minute, restoring their stored
jobs (unpickling a cron trigger each) costs a good part of a second before
the first job can start. A stored job's pickled state changes only when the
job does, so this store keeps the state it last read or wrote per job,
keyed by a digest of the pickled bytes: a row nobody changed since is
restored without unpickling, a row changed by anyone else is unpickled as
usual. Equal triggers are kept once, so the memory held is a small dict per
schedule.
"""
from __future__ import annotations

import hashlib
import pickle
from typing import Any

from apscheduler.job import Job as StoredJob
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

__all__ = ["RememberingJobStore", "digest"]

# Stored jobs whose state is remembered; past this the memory is dropped and rebuilt from the rows.
DEFAULT_MAX_REMEMBERED = 100_000


def digest(blob: bytes) -> bytes:
    """A short fingerprint of a stored job's pickled state."""
    return hashlib.blake2b(blob, digest_size=16).digest()


class RememberingJobStore(SQLAlchemyJobStore):
    """A SQLAlchemy job store that restores an unchanged row from memory instead of unpickling it."""

    def __init__(self, *, max_remembered: int = DEFAULT_MAX_REMEMBERED, **options: Any) -> None:
        super().__init__(**options)
        self.max_remembered = max_remembered
        self._states: dict[bytes, dict[str, Any]] = {}
        self._digests: dict[str, bytes] = {}
        self._triggers: dict[tuple[type, str], Any] = {}
        # Identities of the triggers kept above (alive while kept, so an identity is never reused meanwhile).
        self._kept: set[int] = set()

    def pickled(self, job: StoredJob) -> bytes:
        """Pickle a job's state the way the store writes it, and remember it."""
        state = job.__getstate__()
        blob = pickle.dumps(state, self.pickle_protocol)
        self._remember(digest(blob), state)
        return blob

    def forget(self, job_ids: set[str]) -> None:
        """Drop what is remembered of removed jobs."""
        for job_id in job_ids:
            self._states.pop(self._digests.pop(job_id, b""), None)

    def _remember(self, digest: bytes, state: dict[str, Any]) -> dict[str, Any]:
        if len(self._states) >= self.max_remembered:
            self._states.clear()
            self._digests.clear()
            self._triggers.clear()
            self._kept.clear()
        trigger = state["trigger"]
        if id(trigger) not in self._kept:
            trigger = self._triggers.setdefault((type(trigger), repr(trigger)), trigger)
            self._kept.add(id(trigger))
        state = {**state, "trigger": trigger}
        state.pop("jobstore", None)
        previous = self._digests.get(state["id"])
        if previous is not None and previous != digest:
            self._states.pop(previous, None)
        self._digests[state["id"]] = digest
        self._states[digest] = state
        return state

    def _reconstitute_job(self, job_state: bytes) -> StoredJob:
        fingerprint = digest(job_state)
        state = self._states.get(fingerprint)
        if state is None:
            state = self._remember(fingerprint, pickle.loads(job_state))
        job = StoredJob.__new__(StoredJob)
        job.__setstate__(state)
        job._scheduler = self._scheduler
        job._jobstore_alias = self._alias
        return job
