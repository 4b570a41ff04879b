"""Opaque cursors for keyset pagination."""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import MalformedRequest

__all__ = ["encode_cursor", "decode_cursor", "cut_page", "MAX_ROW_NUMBER", "MAX_BIGINT"]

# Largest id or number a row holds: PostgreSQL's INTEGER, the type of every id, version and sequence number column (SQLite's
# go further). A larger one asked for matches no row, and is not sent to PostgreSQL, which refuses to compare it with one.
MAX_ROW_NUMBER = 2**31 - 1
# Largest number a BIGINT column holds: PostgreSQL's transaction ids (the event feed's ``tx``), which pass 2**31 on a busy server.
MAX_BIGINT = 2**63 - 1

Row = TypeVar("Row")


def encode_cursor(position: dict[str, Any]) -> str:
    """Wrap a keyset position into an opaque string."""
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, keys: tuple[str, ...] = ("after",), name: str = "cursor",
                  largest: dict[str, int] | None = None) -> dict[str, Any] | None:
    """Unwrap a cursor made by ``encode_cursor``; refuse anything else.

    Each key holds a row number, at most ``MAX_ROW_NUMBER`` unless ``largest`` says otherwise for it.
    """
    largest = largest or {}
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        position = None
    if not isinstance(position, dict) or set(position) != set(keys) or not all(
        type(position[k]) is int and 0 <= position[k] <= largest.get(k, MAX_ROW_NUMBER) for k in keys
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
