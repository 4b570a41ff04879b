"""Opaque cursors for keyset pagination."""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import MalformedRequest

__all__ = ["encode_cursor", "decode_cursor", "cut_page", "MAX_ROW_NUMBER"]

# Largest integer the store can compare (SQLite INTEGER, PostgreSQL BIGINT); no id or number is ever larger.
MAX_ROW_NUMBER = 2**63 - 1

Row = TypeVar("Row")


def encode_cursor(position: dict[str, Any]) -> str:
    """Wrap a keyset position into an opaque string."""
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, keys: tuple[str, ...] = ("after",), name: str = "cursor") -> dict[str, Any] | None:
    """Unwrap a cursor made by ``encode_cursor``; refuse anything else."""
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        position = None
    if not isinstance(position, dict) or set(position) != set(keys) or not all(
        type(position[k]) is int and 0 <= position[k] <= MAX_ROW_NUMBER for k in keys
    ):
        raise MalformedRequest(
            f"{name} {cursor!r} is not a cursor this runner issued; pass back next_cursor from a previous page",
            errors=[{"field": name, "message": "not a valid cursor", "value": cursor}],
        )
    return position


def cut_page(rows: list[Row], limit: int, position: Callable[[Row], dict[str, Any]]) -> tuple[list[Row], str | None]:
    """Split rows read with ``limit + 1`` into the page and the cursor of the next one (None on the last page)."""
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, encode_cursor(position(page[-1]))
