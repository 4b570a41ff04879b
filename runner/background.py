"""The embedded default's background roles (job and delivery workers, the scheduler) in one child of ``serve``.

The child is forked from the API's master process after the app is loaded,
so it shares the imported code with the API workers instead of loading its
own copy. It leaves when the master goes, even if the master was killed.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading

__all__ = ["BackgroundProcess", "run_roles"]

log = logging.getLogger(__name__)

# Seconds a stopping background process gets to finish its current steps before it is killed.
DEFAULT_STOP_GRACE = 10.0
# How often the child checks that its parent is still there.
PARENT_CHECK_SECONDS = 1.0


def run_roles(*, jobs: bool, deliveries: bool, scheduler: bool, parent_pid: int | None) -> None:
    """Run background roles until SIGTERM/SIGINT, or until ``parent_pid`` is no longer our parent."""
    from . import doorbell
    from .config import Settings
    from .roles import Roles
    from .runtime import DELIVERIES_DUE, JOBS_DUE, Runtime

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCHLD, signal.SIGQUIT, signal.SIGTTIN,
                   signal.SIGTTOU):
        signal.signal(signum, signal.SIG_DFL)
    rt = Runtime.from_settings(Settings.from_env())
    roles = Roles(rt, jobs=jobs, deliveries=deliveries, scheduler=scheduler)
    roles.start()
    doorbell.listen({doorbell.JOBS: rt.signals[JOBS_DUE], doorbell.DELIVERIES: rt.signals[DELIVERIES_DUE]}, stopping)
    try:
        while not stopping.wait(PARENT_CHECK_SECONDS):
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("serve (pid %s) is gone; background roles stop", parent_pid)
                break
    finally:
        roles.stop()
        rt.db.dispose()


class BackgroundProcess:
    """Fork the background roles beside the API and stop them with it."""

    def __init__(self, *, scheduler: bool) -> None:
        self.scheduler = scheduler
        self.process: multiprocessing.process.BaseProcess | None = None

    def options(self) -> dict[str, object]:
        """What the child runs: job and delivery workers, and the scheduler when asked."""
        return {"jobs": True, "deliveries": True, "scheduler": self.scheduler, "parent_pid": os.getpid()}

    def start(self) -> None:
        """Fork the child."""
        context = multiprocessing.get_context("fork")
        self.process = context.Process(target=run_roles, kwargs=self.options(), name="runbook-manager-background", daemon=False)
        self.process.start()
        log.info("background roles started (pid %s, scheduler %s)", self.process.pid, self.scheduler)

    def stop(self) -> None:
        """Ask the child to finish, then kill it if it does not."""
        if self.process is None or not self.process.is_alive():
            return
        self.process.terminate()
        self.process.join(DEFAULT_STOP_GRACE)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
