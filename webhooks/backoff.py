"""Retry delays as a pure function of the attempt number."""
from __future__ import annotations

import random

__all__ = ["compute_backoff"]


def compute_backoff(attempt: int, *, base: float, factor: float = 2.0, max_delay: float, jitter: float = 0.1,
                    rng: random.Random | None = None) -> float:
    """Return the delay in seconds before retry number ``attempt`` (1 = first retry).

    Exponential: ``base * factor ** (attempt - 1)`` capped at ``max_delay``, then
    spread by up to ``±jitter`` (a fraction) so that many failing calls do not
    retry in lockstep.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt!r}")
    try:
        delay = min(max_delay, base * factor ** (attempt - 1))
    except OverflowError:  # the exponential outgrew a float long after passing any cap
        delay = max_delay if base > 0 else 0.0
    if jitter:
        spread = delay * jitter
        delay += (rng or random).uniform(-spread, spread)
    return max(0.0, min(delay, max_delay))
