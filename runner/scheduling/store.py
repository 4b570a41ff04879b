"""APScheduler's SQLAlchemy job store, remembering what it unpickled so a burst of due jobs is not restored from scratch.

When 10,000 schedules fall due on the same minute, restoring their stored
jobs (unpickling a cron trigger each) costs a good part of a second before
the first job can start. A stored job's pickled state changes only when the
job does, so this store keeps the state it last read or wrote per job,
keyed by a digest of the pickled bytes: a row nobody changed since is
restored without unpickling, a row changed by anyone else is unpickled as
usual. Equal triggers are kept once, so the memory held is a small dict per
schedule. A job restored from memory also skips resolving its function by
name again: its attributes are copied from the first job restored from the
same state.
"""
from __future__ import annotations

import hashlib
import pickle
from typing import Any

from apscheduler.job import Job as StoredJob
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

__all__ = ["RememberingJobStore"]

# Stored jobs whose state is remembered; past this the memory is dropped and rebuilt from the rows.
DEFAULT_MAX_REMEMBERED = 100_000


def _digest(blob: bytes) -> bytes:
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
        # By digest, the attributes of a job restored from that state (APScheduler's Job keeps them in __slots__).
        self._restored: dict[bytes, tuple[tuple[str, Any], ...]] = {}

    def pickled(self, job: StoredJob) -> bytes:
        """Pickle a job's state the way the store writes it, and remember it."""
        state = job.__getstate__()
        blob = pickle.dumps(state, self.pickle_protocol)
        self._remember(_digest(blob), state)
        return blob

    def forget(self, job_ids: set[str]) -> None:
        """Drop what is remembered of removed jobs."""
        for job_id in job_ids:
            digest = self._digests.pop(job_id, b"")
            self._states.pop(digest, None)
            self._restored.pop(digest, None)

    def _remember(self, digest: bytes, state: dict[str, Any]) -> dict[str, Any]:
        if len(self._states) >= self.max_remembered:
            self._states.clear()
            self._restored.clear()
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
            self._restored.pop(previous, None)
        self._digests[state["id"]] = digest
        self._states[digest] = state
        return state

    def _reconstitute_job(self, job_state: bytes) -> StoredJob:
        digest = _digest(job_state)
        job = StoredJob.__new__(StoredJob)
        restored = self._restored.get(digest)
        if restored is not None:
            for name, value in restored:
                setattr(job, name, value)
        else:
            state = self._states.get(digest)
            if state is None:
                state = self._remember(digest, pickle.loads(job_state))
            job.__setstate__(state)
            if _RESTORED:
                self._restored[digest] = tuple((name, getattr(job, name)) for name in _RESTORED if hasattr(job, name))
        job._scheduler = self._scheduler
        job._jobstore_alias = self._alias
        return job


# What a job's state sets: all of its slots but the scheduler's links to it (none if a release drops __slots__: then every
# job is restored through __setstate__).
_RESTORED = tuple(name for name in getattr(StoredJob, "__slots__", ()) if name not in ("__weakref__", "_scheduler", "_jobstore_alias"))
