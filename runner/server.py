"""``runbook-manager serve``: the API behind gunicorn, plus the background roles in the embedded default."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

__all__ = ["serve_api"]

log = logging.getLogger(__name__)


class _Gunicorn(BaseApplication):
    """Run a Flask app factory under gunicorn without a config file."""

    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._factory()


def serve_api(factory: Callable[[], Flask], *, host: str, port: int, workers: int, threads: int,
              on_ready: Callable[[], None] | None = None, on_exit: Callable[[], None] | None = None) -> None:
    """Serve the API with gunicorn's threaded workers until stopped."""
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 120,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "runbook-manager",
    }
    if on_ready is not None:
        options["when_ready"] = lambda _server: on_ready()
    if on_exit is not None:
        options["on_exit"] = lambda _server: on_exit()
    _Gunicorn(factory, options).run()
