"""The one function that says what an HTTP answer means for the caller.

Shared by http steps, the webhook sender and the connector's client:
success, retry (maybe after a server-given delay), give up, or gone (410).
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from enum import Enum

__all__ = ["Verdict", "Classification", "classify_response", "header_value", "parse_retry_after", "RETRIABLE_STATUSES"]

# Answers that say "try again later" rather than "this will never work".
RETRIABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class Verdict(str, Enum):
    SUCCESS = "success"
    RETRY = "retry"
    GIVE_UP = "give_up"
    GONE = "gone"


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    reason: str
    retry_after: float | None = None


def header_value(headers: Mapping[str, str] | None, name: str) -> str | None:
    """The value of header ``name`` in ``headers`` as a receiver spelled them, whatever the case of either."""
    name = name.lower()
    return next((value for key, value in (headers or {}).items() if key.lower() == name), None)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Read a Retry-After header (seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def classify_response(status: int | None, headers: Mapping[str, str] | None = None, *, error: str | None = None,
                      expected: Collection[int] = ()) -> Classification:
    """Classify an answer (``status``) or a transport failure (``error``)."""
    if status is None:
        return Classification(Verdict.RETRY, error or "no answer")
    if (status in expected) if expected else 200 <= status < 300:
        return Classification(Verdict.SUCCESS, f"HTTP {status}")
    if status == 410:
        return Classification(Verdict.GONE, "HTTP 410 Gone")
    if status in RETRIABLE_STATUSES:
        retry_after = parse_retry_after(header_value(headers, "Retry-After"))
        return Classification(Verdict.RETRY, f"HTTP {status}", retry_after)
    if expected and 200 <= status < 300:
        wanted = ", ".join(str(s) for s in sorted(expected))
        return Classification(Verdict.GIVE_UP, f"HTTP {status}, expected {wanted}")
    return Classification(Verdict.GIVE_UP, f"HTTP {status}")
