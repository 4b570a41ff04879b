"""What a running runner holds: settings, the store, a clock, and per-process caches."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import doorbell
from .clock import Clock, SystemClock
from .config import Settings
from .db import Database

__all__ = ["Runtime", "TTLCache", "JOBS_DUE", "DELIVERIES_DUE"]

# Keys a write transaction sets in ``session.info`` so that workers of this process wake up after commit.
JOBS_DUE = "rbm_jobs_due"
DELIVERIES_DUE = "rbm_deliveries_due"


class TTLCache:
    """A small thread-safe cache whose entries expire after ``ttl`` seconds of monotonic time."""

    def __init__(self, ttl: float, *, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        """Return a live entry or None."""
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def put(self, key: Any, value: Any) -> None:
        """Store an entry, dropping everything when the cache is full."""
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._items) >= self.max_entries:
                self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl, value)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._items.clear()


@dataclass
class Runtime:
    """Everything the services need, built once per process by the app factory or the CLI."""

    settings: Settings
    db: Database
    clock: Clock = field(default_factory=SystemClock)
    tokens: TTLCache = field(init=False)
    signals: dict[str, threading.Event] = field(init=False)
    # Set while this process's scheduler fires a burst of ticks (more than one batch): the job workers of the process
    # start no job until it is done, so that the burst is fired first and its last jobs are not created late.
    firing_burst: threading.Event = field(init=False)

    def __post_init__(self) -> None:
        from webhooks.fanout import CREATED_DELIVERIES, fan_out

        self.tokens = TTLCache(self.settings.token_cache_seconds)
        self.signals = {JOBS_DUE: threading.Event(), DELIVERIES_DUE: threading.Event()}
        self.firing_burst = threading.Event()
        from .models.saving import write_plainly
        from .services import audit

        self.db.before_flush(write_plainly)

        for callback in (audit.flush, fan_out):
            if callback not in self.db.before_commit:
                self.db.before_commit.append(callback)

        def wake(info: dict[str, Any]) -> None:
            if info.get(JOBS_DUE):
                self.signals[JOBS_DUE].set()
                doorbell.ring(doorbell.JOBS)
            if info.get(CREATED_DELIVERIES) or info.get(DELIVERIES_DUE):
                self.signals[DELIVERIES_DUE].set()
                doorbell.ring(doorbell.DELIVERIES)

        self.db.after_commit.append(wake)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> Runtime:
        """Open the store named by ``settings``."""
        return cls(settings=settings, db=Database(settings.database_url), clock=clock or SystemClock())
