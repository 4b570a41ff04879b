"""Opaque cursors for keyset pagination."""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ..errors import MalformedRequest

__all__ = ["encode_cursor", "decode_cursor"]


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
        isinstance(position[k], int) and position[k] >= 0 for k in keys
    ):
        raise MalformedRequest(
            f"{name} {cursor!r} is not a cursor this runner issued; pass back next_cursor from a previous page",
            errors=[{"field": name, "message": "not a valid cursor", "value": cursor}],
        )
    return position
