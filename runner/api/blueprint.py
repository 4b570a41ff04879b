"""The blueprint every API resource uses: flask-smorest's, with a JSON parser that also refuses bodies nested too deep."""
from __future__ import annotations

from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Request
from webargs.flaskparser import FlaskParser

__all__ = ["Blueprint"]


class JsonParser(FlaskParser):
    """webargs' Flask parser; JSON nested deeper than Python's decoder can follow is malformed (400), not a crash."""

    def load_json(self, req: Request, schema: ma.Schema) -> Any:
        """Load the JSON body, treating a body too deeply nested to decode as invalid JSON."""
        try:
            return super().load_json(req, schema)
        except RecursionError as exc:
            return self._handle_invalid_json_error(exc, req)


class Blueprint(flask_smorest.Blueprint):
    """A resource's routes, parsed with ``JsonParser``."""

    ARGUMENTS_PARSER = JsonParser()

    def arguments(self, schema: type[ma.Schema] | ma.Schema, *args: Any, **kwargs: Any) -> Any:
        """flask-smorest's ``arguments``, given one schema instance for every request (webargs builds one per request from a class)."""
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)
