"""The background roles a process can run: job workers, delivery workers, the scheduler."""
from __future__ import annotations

import logging
from typing import Any

from .runtime import Runtime

__all__ = ["Roles"]

log = logging.getLogger(__name__)


class Roles:
    """Start and stop the background roles of one process together."""

    def __init__(self, rt: Runtime, *, jobs: bool = True, deliveries: bool = True, scheduler: bool = False) -> None:
        from .engine import JobWorker

        self.rt = rt
        self.parts: list[Any] = []
        if jobs:
            self.parts.append(JobWorker(rt))
        if deliveries:
            from webhooks.delivery import DeliveryWorker

            self.parts.append(DeliveryWorker(rt))
        if scheduler:
            from .scheduling.scheduler import ScheduleRunner

            self.parts.append(ScheduleRunner(rt))

    def start(self) -> None:
        """Start every role."""
        for part in self.parts:
            part.start()
        log.info("background roles started: %s", ", ".join(type(p).__name__ for p in self.parts))

    def stop(self) -> None:
        """Stop every role, letting work under way finish."""
        for part in reversed(self.parts):
            part.stop()
