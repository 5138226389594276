"""Per-token token buckets: the shared ones of `libs.runtime.ratelimit` (also used before
authentication, per client address), re-exported where the gateway has always found them.

Each replica limits on its own, so N replicas allow up to N times the rate in the worst case;
that is the usual trade for a limiter with no round trip on the hot path (the limit protects the
orchestrator from a runaway CI loop, it is not a billing meter).
"""

from __future__ import annotations

from libs.runtime.ratelimit import RateLimiter, retry_after_header

__all__ = ["RateLimiter", "retry_after_header"]
