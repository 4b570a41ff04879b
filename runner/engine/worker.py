"""The job worker: threads that claim due jobs and drive them."""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from webhooks.outbound import OutboundPolicy

from ..models import Job
from ..runtime import JOBS_DUE, Runtime
from .driver import claim, drive

__all__ = ["JobWorker", "new_worker_id", "renew_leases"]

log = logging.getLogger(__name__)


def renew_leases(rt: Runtime, model: Any, worker_id: str) -> int:
    """Push back the lease of every row of ``model`` that ``worker_id`` holds; return how many."""
    now = rt.clock.now()
    with rt.db.write() as session:
        result = session.execute(
            update(model).where(model.lease_owner == worker_id, model.lease_until.is_not(None), model.lease_until < now + timedelta(seconds=rt.settings.lease_seconds))
            .values(lease_until=now + timedelta(seconds=rt.settings.lease_seconds))
        )
        return result.rowcount


def new_worker_id(role: str = "worker") -> str:
    """Name a worker uniquely: host, pid and a random suffix."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobWorker:
    """Claim and drive due jobs, from tests (``run_until_idle``) or threads (``start``)."""

    def __init__(self, rt: Runtime, *, worker_id: str | None = None, threads: int | None = None,
                 policy: OutboundPolicy | None = None) -> None:
        self.rt = rt
        self.worker_id = worker_id or new_worker_id()
        self.threads = threads or rt.settings.worker_threads
        self.policy = policy or OutboundPolicy.from_setting(rt.settings.outbound_allowlist)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def run_once(self, limit: int | None = None) -> int:
        """Claim up to ``limit`` due jobs and drive each; return how many were claimed."""
        uuids = claim(self.rt, self.worker_id, limit or self.threads)
        for job_uuid in uuids:
            self._drive(job_uuid)
        return len(uuids)

    def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Drive jobs until none is due (for tests and the CLI); return how many claims were made."""
        total = 0
        for _ in range(max_rounds):
            claimed = self.run_once()
            if not claimed:
                return total
            total += claimed
        raise RuntimeError(f"jobs still due after {max_rounds} rounds")

    def _drive(self, job_uuid: str) -> None:
        try:
            drive(self.rt, job_uuid, self.worker_id, policy=self.policy)
        except Exception:  # noqa: BLE001 - one broken job must not stop the worker; its lease expires and it is retried
            log.exception("driving job %s failed", job_uuid)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                uuids = claim(self.rt, self.worker_id, 1)
            except Exception:  # noqa: BLE001 - the store may be briefly unavailable; try again
                log.exception("claiming jobs failed")
                uuids = []
            for job_uuid in uuids:
                self._drive(job_uuid)
            if not uuids:
                signal = self.rt.signals[JOBS_DUE]
                signal.wait(self.rt.settings.poll_interval)
                signal.clear()

    def heartbeat(self) -> int:
        """Extend the leases this worker holds (so a live worker keeps its jobs and a dead one loses them)."""
        return renew_leases(self.rt, Job, self.worker_id)

    def _beat(self) -> None:
        while not self._stop.wait(self.rt.settings.lease_seconds / 3):
            try:
                self.heartbeat()
            except Exception:  # noqa: BLE001 - a missed beat only shortens the lease; the next one retries
                log.exception("lease heartbeat failed")

    def start(self) -> None:
        """Start the worker threads and their lease heartbeat."""
        beat = threading.Thread(target=self._beat, name="job-lease-heartbeat", daemon=True)
        beat.start()
        self._threads.append(beat)
        for index in range(self.threads):
            thread = threading.Thread(target=self._loop, name=f"job-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the steps under way finish."""
        self._stop.set()
        self.rt.signals[JOBS_DUE].set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
