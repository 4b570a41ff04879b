"""``runbook-manager serve``: the API behind gunicorn, plus the background roles in the embedded default."""
from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

__all__ = ["gunicorn_options", "serve_api"]

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
        app = self._factory()
        # Keep the garbage collector off the objects loaded so far, so forked workers keep sharing their pages.
        gc.freeze()
        return app


def _fresh_connections(server: Any, worker: Any) -> None:
    """Drop database connections inherited from the master (a forked worker must open its own)."""
    from .api.context import EXTENSION

    app = server.app.callable
    if app is not None and EXTENSION in app.extensions:
        app.extensions[EXTENSION].db.engine.dispose(close=False)


def gunicorn_options(*, host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    """The gunicorn settings `serve` runs the API with.

    The app is built once in the master and the workers are forked from it
    (preload), so they share the imported code instead of each loading its own
    copy; each worker then opens its own database connections. Requests are
    parsed by gunicorn's C parser (``gunicorn_h1c``, installed with the
    runner) rather than its pure-Python one.
    """
    return {
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
        "preload_app": True,
        "post_fork": _fresh_connections,
        "http_parser": "auto",
    }


def serve_api(factory: Callable[[], Flask], *, host: str, port: int, workers: int, threads: int,
              on_ready: Callable[[], None] | None = None, on_exit: Callable[[], None] | None = None) -> None:
    """Serve the API with gunicorn's threaded workers until stopped."""
    options = gunicorn_options(host=host, port=port, workers=workers, threads=threads)
    if on_ready is not None:
        options["when_ready"] = lambda _server: on_ready()
    if on_exit is not None:
        options["on_exit"] = lambda _server: on_exit()
    _Gunicorn(factory, options).run()
