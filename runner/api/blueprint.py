"""The blueprint every API resource uses: flask-smorest's, with the runner's own JSON decoding (``runner.jsonbody``)."""
from __future__ import annotations

from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Request
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from ..jsonbody import MalformedJson, loads

__all__ = ["Blueprint"]


class JsonParser(FlaskParser):
    """webargs' Flask parser, decoding bodies with ``runner.jsonbody``: what it refuses is malformed (400), not a crash."""

    def _raw_load_json(self, req: Request) -> Any:
        return loads(req.get_data(cache=True)) if is_json_request(req) else core.missing

    def load_json(self, req: Request, schema: ma.Schema) -> Any:
        """Load the JSON body; one that ``runner.jsonbody`` refuses is answered like any malformed body, saying why."""
        try:
            return super().load_json(req, schema)
        except MalformedJson as exc:
            return self._handle_invalid_json_error(exc, req)


class Blueprint(flask_smorest.Blueprint):
    """A resource's routes, parsed with ``JsonParser``."""

    ARGUMENTS_PARSER = JsonParser()

    def arguments(self, schema: type[ma.Schema] | ma.Schema, *args: Any, **kwargs: Any) -> Any:
        """flask-smorest's ``arguments``, given one schema instance for every request (webargs builds one per request from a class)."""
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)
