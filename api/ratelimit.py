"""Per-key rate limit: a token bucket per API key, in the API process.

With several API worker processes each keeps its own buckets, so the effective limit
is the per-key limit times the number of workers (one worker by default)."""

from __future__ import annotations

import math
import time


class TokenBuckets:
    def __init__(self) -> None:
        self._buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, last refill)

    def take(self, key_id: int, per_minute: int) -> float:
        """Consume one token; return 0 when allowed, else seconds until one is available."""
        now = time.monotonic()
        rate = per_minute / 60.0
        tokens, last = self._buckets.get(key_id, (float(per_minute), now))
        tokens = min(float(per_minute), tokens + (now - last) * rate)
        if tokens >= 1.0:
            self._buckets[key_id] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key_id] = (tokens, now)
        return (1.0 - tokens) / rate


def retry_after_header(wait: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(wait)))}
