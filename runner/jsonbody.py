"""JSON as the runner accepts it: RFC 8259 documents it can store and answer with again.

Python's decoder accepts more than that, and what it lets through fails
later, as a server error, or is stored and breaks every page that shows it:
``NaN`` and ``Infinity`` (not JSON; answers would carry them back),
numbers out of a double's range (``1e400`` decodes to infinity, an integer
of thousands of digits cannot even be converted), strings with a lone
UTF-16 surrogate (``"\\ud800"``: decodes, but no database can encode it) or a NUL
character (``"\\u0000"``: PostgreSQL keeps none in text or JSON), and
nesting deeper than anything a runbook or its parameters need.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_INTEGER_DIGITS", "MalformedJson", "loads"]

# Arrays and objects nested deeper than this are refused: a runbook, a parameters schema and its values need a few levels.
MAX_DEPTH = 64
# Integers of more digits than this are refused: past a double's range (about 1.8e308), no number check can compare them.
MAX_INTEGER_DIGITS = 308

# A \u escape of a UTF-16 surrogate (the decoder pairs a high one with the low one after it, and leaves any other alone),
# or of NUL (which PostgreSQL keeps in no text or JSON value).
_SUSPECT_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")


class MalformedJson(ValueError):
    """A body that decodes as Python's JSON but not as the runner's: ``field`` is where (dotted path), ``value`` what."""

    def __init__(self, message: str, *, field: str = "body", value: Any = None) -> None:
        super().__init__(message)
        self.message, self.field, self.value = message, field, value

    @property
    def error(self) -> dict[str, Any]:
        """The refusal as one entry of a problem document's ``errors``."""
        return {"field": self.field, "message": self.message, "value": self.value}


def _constant(name: str) -> Any:
    raise MalformedJson(f"{name} is not a JSON number", value=name)


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise MalformedJson(f"the number {text[:40]} is out of range (a double's, about ±1.8e308)", value=text[:40])
    return number


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise MalformedJson(f"an integer of {len(text.lstrip('-'))} digits is out of range (at most {MAX_INTEGER_DIGITS})",
                            value=text[:40] + "…")
    return int(text)


def loads(document: str | bytes) -> Any:
    """Decode ``document`` like ``json.loads``, refusing what the runner cannot keep (``MalformedJson``).

    Bytes are read as ``json.loads`` reads them: UTF-8 (with or without a byte order mark), UTF-16 or UTF-32. Text that
    is not JSON at all raises ``json.JSONDecodeError``, as ``json.loads`` does.
    """
    if isinstance(document, bytes):
        encoding = json.detect_encoding(document)
        try:
            document = document.decode(encoding)
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(f"not {encoding}: {exc.reason}", doc=repr(exc.object[:40]), pos=exc.start) from exc
    try:
        decoded = json.loads(document, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except RecursionError as exc:
        raise MalformedJson(f"nested too deeply to decode (at most {MAX_DEPTH} levels)") from exc
    # Both checks walk the document only when its text could hold what they look for: nearly every body is spared.
    if document.count("[") + document.count("{") > MAX_DEPTH:
        _check_depth(decoded)
    if _SUSPECT_ESCAPE.search(document):
        _check_strings(decoded, [])
    return decoded


def _check_depth(decoded: Any) -> None:
    level, containers = 0, [decoded] if isinstance(decoded, (dict, list)) else []
    while containers:
        level += 1
        if level > MAX_DEPTH:
            raise MalformedJson(f"nested more than {MAX_DEPTH} levels deep")
        containers = [child for node in containers for child in (node.values() if isinstance(node, dict) else node)
                      if isinstance(child, (dict, list))]


def _check_strings(node: Any, path: list[str]) -> None:
    if isinstance(node, str):
        _encodable(node, path)
    elif isinstance(node, dict):
        for key, child in node.items():
            _encodable(key, path)
            _check_strings(child, [*path, key])
    elif isinstance(node, list):
        for index, child in enumerate(node):
            _check_strings(child, [*path, str(index)])


def _encodable(text: str, path: list[str]) -> None:
    if "\x00" in text:
        raise MalformedJson("a string holds a NUL character (\\u0000), which is not text", field=".".join(path) or "body",
                            value="\\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        surrogate = f"\\u{ord(text[exc.start]):04x}"
        raise MalformedJson(f"a string holds a lone UTF-16 surrogate ({surrogate}), which is not text",
                            field=".".join(path) or "body", value=surrogate) from None
