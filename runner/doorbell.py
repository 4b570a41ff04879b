"""Wake `serve`'s background roles the moment an API worker commits work for them.

Without it the background child finds new jobs and deliveries only when its
idle poll comes round (RUNBOOK_MANAGER_POLL_INTERVAL). `serve` opens one pipe
before it forks anything; API workers write a byte to it after a commit that
made jobs or deliveries due, and the background child wakes the matching
workers. Separate `worker` processes (scale-out) keep polling.
"""
from __future__ import annotations

import logging
import os
import select
import threading

__all__ = ["install", "ring", "listen", "JOBS", "DELIVERIES"]

log = logging.getLogger(__name__)

JOBS = b"j"
DELIVERIES = b"d"

# (read end, write end) of the pipe `serve` shares with the processes it forks; None elsewhere.
_pipe: tuple[int, int] | None = None
# Set in the process that listens: it wakes its own workers directly and never rings.
_listening = False


def install() -> None:
    """Open the pipe (in `serve`, before the API workers and the background child are forked)."""
    global _pipe
    if _pipe is None:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        _pipe = (read_end, write_end)


def ring(what: bytes) -> None:
    """Tell the listening process that jobs (``JOBS``) or deliveries (``DELIVERIES``) are due; never blocks."""
    if _pipe is None or _listening:
        return
    try:
        os.write(_pipe[1], what)
    except BlockingIOError:
        pass  # the pipe is full of rings the listener has not read yet: it is awake anyway


def listen(wake: dict[bytes, threading.Event], stopping: threading.Event) -> threading.Thread | None:
    """Start a thread that sets ``wake[byte]`` for every byte rung, until ``stopping`` is set; None without a pipe."""
    global _listening
    if _pipe is None:
        return None
    _listening = True
    read_end = _pipe[0]

    def run() -> None:
        while not stopping.is_set():
            try:
                readable, _, _ = select.select([read_end], [], [], 0.5)
                rung = os.read(read_end, 4096) if readable else b""
            except BlockingIOError:
                continue  # another reader took it
            except OSError:
                log.exception("the doorbell pipe failed; the background workers fall back to polling")
                return
            for what, event in wake.items():
                if what in rung:
                    event.set()

    thread = threading.Thread(target=run, name="doorbell", daemon=True)
    thread.start()
    return thread
