"""Fault injection: the ways a real API server misbehaves, on demand.

Each simulated cluster has one `Faults`. Tests and `fleet sim up` users turn faults on
(Python calls, or `POST /_sim/faults` with the cluster's token) and the cluster's
middleware applies them to every API request before it reaches a handler:

    latency          seconds added to every request, or to requests under a path prefix
                     (`delayed_peak` counts how many were held at once)
    fail_next(n)     the next n requests answer `status` (5xx as InternalError or
                     ServiceUnavailable, 429 TooManyRequests with Retry-After)
    fail_rate(p)     each request fails with probability p (seeded: runs repeat)
    drop_next(n)     the next n requests get their connection closed, no response
    cut_watches()    every open watch stream ends abruptly (connection aborted)
    expire_watches() the watch history is forgotten: resuming a watch gets 410

The cluster-level faults (down/up, a node NotReady, an out-of-band edit) live on
`SimCluster`, since they change the cluster rather than its answers.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clusters.sim.errors import SimError

_REASONS = {404: "NotFound", 429: "TooManyRequests", 500: "InternalError", 502: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}


@dataclass
class _Failing:
    remaining: int
    status: int
    retry_after: int | None
    prefix: str


@dataclass
class Faults:
    """The fault switches of one cluster (see module docstring); all off by default."""

    latency: float = 0.0
    latency_by_prefix: dict[str, float] = field(default_factory=dict)
    rate: float = 0.0
    rate_status: int = 503
    drops: int = 0
    delayed_now: int = 0
    """Requests inside an injected latency right now."""
    delayed_peak: int = 0
    """The most requests ever inside an injected latency at once: how a test sees that a
    client sends in parallel, by counting instead of timing."""
    _failing: list[_Failing] = field(default_factory=list)
    _rng: random.Random = field(default_factory=lambda: random.Random(0))
    _cut: Callable[[], int] = lambda: 0
    _expire: Callable[[int], None] = lambda keep: None

    def set_latency(self, seconds: float, prefix: str | None = None) -> None:
        if prefix:
            self.latency_by_prefix[prefix] = seconds
        else:
            self.latency = seconds

    def fail_next(self, n: int = 1, status: int = 503, *, retry_after: int | None = None,
                  prefix: str = "/") -> None:
        """The next `n` requests under `prefix` fail with `status`."""
        if status == 429 and retry_after is None:
            retry_after = 1
        self._failing.append(_Failing(n, status, retry_after, prefix))

    def fail_rate(self, rate: float, status: int = 503, *, seed: int = 0) -> None:
        self.rate, self.rate_status = rate, status
        self._rng = random.Random(seed)

    def drop_next(self, n: int = 1) -> None:
        self.drops += n

    def cut_watches(self) -> int:
        """End every open watch stream abruptly; returns how many were cut."""
        return self._cut()

    def expire_watches(self, keep: int = 0) -> None:
        """Forget the watch history (all but `keep` events): older versions get 410."""
        self._expire(keep)

    def clear(self) -> None:
        self.latency, self.rate, self.drops = 0.0, 0.0, 0
        self.latency_by_prefix.clear()
        self._failing.clear()

    # ---------------------------------------------------------- middleware side

    def delay_for(self, path: str) -> float:
        d = self.latency
        for prefix, seconds in self.latency_by_prefix.items():
            if path.startswith(prefix):
                d = max(d, seconds)
        return d

    async def hold(self, seconds: float) -> None:
        """The injected latency of one request, counted while it lasts."""
        self.delayed_now += 1
        self.delayed_peak = max(self.delayed_peak, self.delayed_now)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.delayed_now -= 1

    def take_drop(self) -> bool:
        if self.drops > 0:
            self.drops -= 1
            return True
        return False

    def error_for(self, path: str) -> SimError | None:
        for f in self._failing:
            if path.startswith(f.prefix) and f.remaining > 0:
                f.remaining -= 1
                if f.remaining == 0:
                    self._failing.remove(f)
                return _error(f.status, f.retry_after)
        if self.rate and self._rng.random() < self.rate:
            return _error(self.rate_status, 1 if self.rate_status == 429 else None)
        return None

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        """Apply an admin request (`POST /_sim/faults`); returns what was done."""
        done: dict[str, Any] = {}
        if "latency" in body:
            self.set_latency(float(body["latency"]), body.get("prefix"))
            done["latency"] = body["latency"]
        if "failNext" in body:
            spec = body["failNext"]
            self.fail_next(int(spec.get("count", 1)), int(spec.get("status", 503)),
                           retry_after=spec.get("retryAfter"), prefix=spec.get("prefix", "/"))
            done["failNext"] = spec
        if "failRate" in body:
            spec = body["failRate"]
            self.fail_rate(float(spec.get("rate", 0)), int(spec.get("status", 503)))
            done["failRate"] = spec
        if "dropNext" in body:
            self.drop_next(int(body["dropNext"]))
            done["dropNext"] = body["dropNext"]
        if body.get("cutWatches"):
            done["cutWatches"] = self.cut_watches()
        if "expireWatches" in body:
            self.expire_watches(int(body["expireWatches"] or 0))
            done["expireWatches"] = True
        if body.get("clear"):
            self.clear()
            done["clear"] = True
        return done


def _error(status: int, retry_after: int | None) -> SimError:
    reason = _REASONS.get(status, "InternalError")
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    details = {"retryAfterSeconds": retry_after} if retry_after is not None else None
    message = ("Too many requests, please try again later." if status == 429
               else "simulated server error (fault injection)")
    return SimError(status, reason, message, details, headers)
