"""Workers: threads that claim leased work (due jobs here, deliveries in webhooks.delivery) and process it."""
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
from .driver import Outcome, abandon, claim_and_move, follow_up

__all__ = ["LeasedWorker", "JobWorker", "new_worker_id", "renew_leases"]

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


class LeasedWorker:
    """Threads that claim leased work, process it, and keep their leases alive with a heartbeat.

    Subclasses say how to claim (``claim``), how to handle what was claimed
    (``process``), which table holds the leases and which in-process signal
    wakes them. Tests call ``run_until_idle``; processes call ``start``.
    """

    role = "worker"
    leased: Any = None
    signal_key = ""
    # Items one thread claims per round in the background loop.
    loop_batch = 1
    # While work piles up (each claim filled its batch), the next claim asks for twice as many, up to this (None: never more).
    max_loop_batch: int | None = None
    # Items one ``run_once`` claims when the caller names no limit.
    default_limit = 50
    # Rounds ``run_until_idle`` makes before concluding that something keeps coming due.
    max_rounds = 100
    # Seconds a woken thread lets more work arrive before it claims, so that a stream of small commits is
    # claimed in batches rather than one item per transaction.
    gather_seconds = 0.0

    def __init__(self, rt: Runtime, *, worker_id: str | None = None, threads: int | None = None,
                 policy: OutboundPolicy | None = None) -> None:
        self.rt = rt
        self.worker_id = worker_id or new_worker_id(self.role)
        self.threads = threads or self.default_threads(rt)
        self.policy = policy or OutboundPolicy.from_setting(rt.settings.outbound_allowlist)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Threads claim one at a time (a batch, if work piled up meanwhile) instead of all queueing for the
        # write lock to claim one item each.
        self._claiming = threading.Lock()
        # What the next claim of the background loop asks for (changed under ``_claiming``).
        self._batch = self.loop_batch

    def default_threads(self, rt: Runtime) -> int:
        """How many threads ``start`` runs when none is given."""
        raise NotImplementedError

    def claim(self, limit: int) -> list[Any]:
        """Lease up to ``limit`` due items; return them (ids, or whatever ``process`` takes)."""
        raise NotImplementedError

    def process(self, items: list[Any]) -> None:
        """Handle claimed items; must log, not raise, what fails (its lease lapses and the item is retried)."""
        raise NotImplementedError

    def run_once(self, limit: int | None = None) -> int:
        """Claim up to ``limit`` due items and process them; return how many were claimed."""
        with self._claiming:
            ids = self.claim(limit or self.default_limit)
        if ids:
            self.process(ids)
        return len(ids)

    def run_until_idle(self, max_rounds: int | None = None) -> int:
        """Process items until none is due (for tests and the CLI); return how many were claimed."""
        rounds = max_rounds or self.max_rounds
        total = 0
        for _ in range(rounds):
            claimed = self.run_once()
            if not claimed:
                return total
            total += claimed
        raise RuntimeError(f"{self.role} items still due after {rounds} rounds")

    def heartbeat(self) -> int:
        """Extend the leases this worker holds (so a live worker keeps its items and a dead one loses them)."""
        return renew_leases(self.rt, self.leased, self.worker_id)

    def next_batch(self, asked: int, claimed: int) -> int:
        """How many items the next claim asks for: twice as many after a full batch (work is piling up), else ``loop_batch``."""
        return min(asked * 2, self.max_loop_batch or self.loop_batch) if claimed >= asked else self.loop_batch

    def _loop(self) -> None:
        signal = self.rt.signals[self.signal_key]
        while not self._stop.is_set():
            # One idle thread at a time looks for work and waits for the wake-up signal; the others wait for it to
            # find some, instead of all waking and probing the store on every commit.
            with self._claiming:
                if self._stop.is_set():
                    break
                try:
                    items = self.claim(self._batch)
                except Exception:  # noqa: BLE001 - the store may be briefly unavailable; try again
                    log.exception("%s: claiming failed", self.role)
                    items = []
                self._batch = self.next_batch(self._batch, len(items))
                if not items:
                    # A stop also sets the signal: leave it set, so the threads queued behind this one see it too.
                    if signal.wait(self.rt.settings.poll_interval) and not self._stop.is_set():
                        signal.clear()
                        self._stop.wait(self.gather_seconds)
                    continue
            self.process(items)

    def _beat(self) -> None:
        while not self._stop.wait(self.rt.settings.lease_seconds / 3):
            try:
                self.heartbeat()
            except Exception:  # noqa: BLE001 - a missed beat only shortens the lease; the next one retries
                log.exception("%s: lease heartbeat failed", self.role)

    def start(self) -> None:
        """Start the threads and their lease heartbeat."""
        beat = threading.Thread(target=self._beat, name=f"{self.role}-lease-heartbeat", daemon=True)
        beat.start()
        self._threads.append(beat)
        for index in range(self.threads):
            thread = threading.Thread(target=self._loop, name=f"{self.role}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the work under way finishes."""
        self._stop.set()
        self.rt.signals[self.signal_key].set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()


class JobWorker(LeasedWorker):
    """Claim and drive due jobs."""

    role = "job-worker"
    leased = Job
    signal_key = JOBS_DUE
    max_rounds = 1000
    # Due jobs one thread leases and moves in one transaction; HTTP calls and children follow one by one. When jobs
    # pile up (invocations arriving faster than batches of eight move them), batches grow to 32: half the cost per job.
    loop_batch = 8
    max_loop_batch = 32
    gather_seconds = 0.01

    def default_threads(self, rt: Runtime) -> int:
        """RUNBOOK_MANAGER_WORKER_THREADS."""
        return rt.settings.worker_threads

    def run_once(self, limit: int | None = None) -> int:
        """Claim up to ``limit`` due jobs (a batch per thread by default) and drive each."""
        return super().run_once(limit or self.threads * self.loop_batch)

    def claim(self, limit: int) -> list[tuple[str, Outcome]]:
        """Lease due jobs and move each as far as the database allows (none while this process fires a burst of ticks)."""
        if self.rt.firing_burst.is_set():
            return []
        return claim_and_move(self.rt, self.worker_id, limit)

    def process(self, items: list[tuple[str, Outcome]]) -> None:
        """Make the HTTP calls and run the children the batch left, driving each job until it finishes or waits."""
        for job_uuid, outcome in items:
            try:
                follow_up(self.rt, job_uuid, outcome, self.worker_id, policy=self.policy)
            except Exception:  # noqa: BLE001 - one broken job must not stop the worker; its leases lapse and it is retried
                log.exception("driving job %s failed", job_uuid)
                try:
                    abandon(self.rt, job_uuid, self.worker_id)
                except Exception:  # noqa: BLE001 - the store is unavailable: the heartbeat keeps the leases until it is back
                    log.exception("giving up the leases of job %s failed", job_uuid)
