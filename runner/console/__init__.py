"""The operator console: server-rendered pages for runbooks and their runs under ``/console``.

Views call the same services and engine functions as the API, so a person sees and may do in the
console exactly what their token may do over HTTP.
"""
from __future__ import annotations

from flask import Flask

__all__ = ["init_app"]


def init_app(app: Flask) -> None:
    """Give the app the console's session key and cookie flags, and register its pages."""
    from ..api.context import EXTENSION
    from . import run_pages, runbook_pages, signin, tabs  # noqa: F401 - importing a page module adds its routes
    from .session import configure
    from .web import bp

    configure(app, app.extensions[EXTENSION].settings)
    app.register_blueprint(bp)
