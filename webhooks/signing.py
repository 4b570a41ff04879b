"""Standard Webhooks signatures: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``.

The signed content is ``"{id}.{timestamp}.{body}"``, signed with HMAC-SHA256
under the base64 key that follows ``whsec_`` in the secret; the header holds
space-separated ``v1,<base64 signature>`` entries (several during a key rotation).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

__all__ = ["SECRET_PREFIX", "generate_secret", "sign", "signed_headers", "verify", "VerificationError"]

SECRET_PREFIX = "whsec_"
# Bytes of key material in a generated secret.
SECRET_BYTES = 24
# Accepted distance, in seconds, between a message's timestamp and the receiver's clock.
DEFAULT_TOLERANCE_SECONDS = 300


class VerificationError(Exception):
    """The message is unsigned, wrongly signed or outside the time tolerance."""


def generate_secret() -> str:
    """Make a new signing secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError as exc:
        raise ValueError("a signing secret is 'whsec_' followed by base64") from exc


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``v1,…`` signature of a message."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """Headers that sign ``body`` as message ``msg_id``."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": sign(secret, msg_id, stamp, body)}


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance: int = DEFAULT_TOLERANCE_SECONDS,
           now: float | None = None) -> str:
    """Check a message's signature and timestamp; return its ``webhook-id``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise VerificationError("the message is not signed: webhook-id, webhook-timestamp and webhook-signature are required")
    current = time.time() if now is None else now
    try:
        timestamp = int(stamp)
        skew = abs(current - float(timestamp))
    except (ValueError, OverflowError):  # not a number, or one no clock will ever show
        raise VerificationError(f"webhook-timestamp must be Unix seconds, got {stamp!r}") from None
    if skew > tolerance:
        raise VerificationError(f"webhook-timestamp {timestamp} is {skew:.0f}s away from now; at most {tolerance}s is accepted")
    expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1].encode()
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        # Compared as bytes: a header may hold any character, and compare_digest refuses non-ASCII str.
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return msg_id
    raise VerificationError("webhook-signature does not match the message and the secret")
