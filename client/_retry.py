"""When to send a request again: on 503 and 429, after the server's ``Retry-After``, within a bound.

fairgate answers 503 with ``Retry-After`` when it sheds load, times a request out, or is
not ready yet (docs/reliability.md); BentoML's own concurrency limit answers 429 without
it. Both mean "later", so the client waits what the server asks (or backs off
exponentially when it does not say) and tries again, but never more than
``max_attempts`` times nor longer than ``max_total_wait_s`` in all: a caller that is
itself serving a request needs a bounded answer, and an overloaded server needs callers
that eventually stop.

Retrying a 503 is safe for the server's state in the common cases (shed or not ready:
the request did no work). A 503 for a request that outlived the server's deadline may
still have been processed, so its retry counts once more in the rate windows; callers for
whom that matters set ``RetryPolicy(max_attempts=1)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

__all__ = ["RetryPolicy", "parse_retry_after"]


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how long to retry a 503/429.

    ``max_attempts`` counts every request sent (1 = never retry). ``max_total_wait_s`` bounds
    the sleeping between them; a ``Retry-After`` that would cross it ends the retries at
    once rather than sleeping in vain. Without ``Retry-After`` the wait is
    ``backoff_s * 2**(retry - 1)``, at most ``max_backoff_s``.
    """

    max_attempts: int = 4
    max_total_wait_s: float = 30.0
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 503}))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy(max_attempts={self.max_attempts}): use 1 (no retry) or more")
        for name in ("max_total_wait_s", "backoff_s", "max_backoff_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"RetryPolicy({name}={value!r}): use a finite number of seconds >= 0")

    def delay(self, *, retry: int, retry_after_s: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        if retry_after_s is not None:
            return retry_after_s
        return min(self.backoff_s * 2.0 ** (retry - 1), self.max_backoff_s)


def parse_retry_after(headers: Mapping[str, str], *, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None when absent or unreadable."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - now()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)
