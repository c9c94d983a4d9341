"""The Lease keeper: renews the Leases this replica holds -- its shards' and the
leader's -- from its own thread.

Renewing on the event loop ties a replica's Leases to its loop's lag: a placement
pass or a big reconcile that keeps the loop busy past a renew deadline lost the shard
(issue 22: in `bench.shards` at 60 clusters x 1,200 workloads the survivor of a kill
lost the shard it had just taken in 3 of 6 runs). The keeper is a thread with an
asyncio loop and an HTTP client of its own (`KubeClient` over the home's
`Configuration`), so a renew waits only for the home cluster and the GIL.

A renew must not outlive the replica it speaks for: a replica whose loop has hung
(stuck in a call, SIGSTOPped, a frozen VM) must lose its Leases so another takes its
clusters. So the loop beats (`beat`, from a task of its own) and the keeper renews only
while the last beat is younger than `liveness` (`--lease-liveness`, default the Lease
duration). A loop that is slow but still beats keeps its Leases; one that stopped
beating loses them a Lease duration after the last renew, like a dead replica, and
writes nothing after: its writers' fence (`LeaderElector.is_leader`, `confirm`) reads
the hold the keeper last committed, one immutable `clusters.leader.Hold` swapped under
a lock, and a renew begun before the hold was dropped (a release, a fence) never brings
it back (`LeaderElector._commit`).

The keeper only renews. Taking, letting go and asking for shards stay in the loop's
rounds (`controllers.runtime.shards`), which skip the Leases the keeper holds; taking
the leader Lease stays in `LeaderElector.run` on the loop, which skips renewing it
while the keeper runs (`LeaderElector.kept`). One keeper per replica
(`controllers.runtime.leadership.Leadership.keeper`), started with leader election.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable

import structlog
from kubernetes_asyncio.client import Configuration

from clusters.client import KubeClient
from clusters.leader import LeaderElector

log = structlog.get_logger()

OUTCOMES = ("renewed", "failed", "lost", "withheld")
"""`aifleet_lease_renewals_total{outcome}`: "withheld" is a renew due but not sent
because the event loop had not beaten within the liveness."""


class LeaseKeeper:
    def __init__(self, *, renew_every: float, liveness: float, retry_every: float = 1.0,
                 timeout: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.renew_every = renew_every
        self.liveness = liveness
        self.retry_every = min(retry_every, renew_every)
        self.timeout = timeout or max(1.0, renew_every)
        """Each request's timeout: a renew stuck on the home must not outlast a period."""
        self.clock = clock
        self.tick = min(0.25, renew_every / 4)
        """Seconds between the keeper's looks at what is due."""
        self._lock = threading.Lock()
        self._leases: dict[int | str, LeaderElector] = {}
        """Each Lease kept, by its `keeper_key`: a shard's number, the leader's name."""
        self._beat: tuple[float, Configuration | None] | None = None
        """(when, the home's configuration) of the event loop's last beat."""
        self._counts: Counter[tuple[int | str, str]] = Counter()
        self._next: dict[int | str, float] = {}
        """Lease -> when (monotonic) to try again after a failure."""
        self._withholding = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    # ------------------------------------------------------------ the event loop's side

    def beat(self, cfg: Configuration | None) -> None:
        """The event loop is alive; the home is reached with `cfg` (None: not now)."""
        self._beat = (self.clock(), cfg)

    def keep(self, lease: LeaderElector) -> None:
        """Renew `lease` while it is held (it is skipped while it is not)."""
        with self._lock:
            self._leases = {**self._leases, lease.keeper_key: lease}

    def kept(self) -> list[LeaderElector]:
        """Every Lease given to `keep` (held or not now), shards by number first."""
        with self._lock:
            leases = self._leases
        return [lease for _key, lease in sorted(leases.items(), key=_order)]

    def counts(self) -> dict[int | str, dict[str, int]]:
        """Lease (a shard's number, the leader's name) -> outcome -> renewals so far."""
        with self._lock:
            counted = dict(self._counts)
        out: dict[int | str, dict[str, int]] = {}
        for (key, outcome), n in sorted(counted.items(), key=_order):
            out.setdefault(key, {})[outcome] = n
        return out

    def totals(self) -> dict[str, int]:
        with self._lock:
            counted = dict(self._counts)
        out = dict.fromkeys(OUTCOMES, 0)
        for (_shard, outcome), n in counted.items():
            out[outcome] += n
        return out

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="aifleet-lease-keeper",
                                        daemon=True)
        self._thread.start()

    def stop(self, within: float = 10.0) -> None:
        """Stop renewing and wait for the thread (a request in flight ends within its
        timeout). The Leases are not let go here: a clean stop lets them go once no
        writer of the replica is left (`controllers.runtime.leadership.Leadership.
        release`); otherwise they lapse after their duration."""
        self._stopping.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # its loop already closed
                loop.call_soon_threadsafe(wake.set)
        if self._thread is not None:
            self._thread.join(within)
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------ the keeper's thread

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            self._loop = None
            loop.close()

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        client: KubeClient | None = None
        cfg: Configuration | None = None
        try:
            while not self._stopping.is_set():
                beat = self._beat
                if beat is not None and beat[1] is not cfg:
                    if client is not None:  # the home changed: a client for the new one
                        await client.close()
                    # None: the loop has no home now (a member home retired, being
                    # reconnected): nothing is renewed, the holds lapse, as on the loop
                    cfg = beat[1]
                    client = None if cfg is None else \
                        KubeClient("lease-keeper", cfg, qps=0, timeout=self.timeout)
                if client is not None:
                    await self.pass_once(client)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.tick)
        finally:
            if client is not None:
                await client.close()

    async def pass_once(self, client: KubeClient) -> None:
        """Renew every held Lease whose renew is due, while the event loop beats (one
        look of the keeper's thread; a test calls it on its own loop)."""
        with self._lock:
            leases = self._leases
        for shard, lease in sorted(leases.items(), key=_order):
            if self._stopping.is_set():
                return
            hold = lease.hold
            now = self.clock()
            if now >= hold.deadline:
                self._next.pop(shard, None)
                continue  # not held: the loop's round takes it again if it may
            due = (hold.renewed or 0.0) + self.renew_every
            if now < max(due, self._next.get(shard, 0.0)):
                continue
            beat = self._beat
            if beat is None or now - beat[0] > self.liveness:
                self._count(shard, "withheld")
                if not self._withholding:
                    self._withholding = True
                    log.warning("lease_renew_withheld", **lease.log_fields(),
                                identity=lease.identity, liveness=self.liveness,
                                beat_age=None if beat is None else round(now - beat[0], 3))
                self._next[shard] = now + self.retry_every
                continue
            self._withholding = False
            try:
                outcome = await lease.renew(client)
            except Exception as e:  # noqa: BLE001 - the keeper's loop driver: never die
                log.warning(lease.RENEW_FAILED, **lease.log_fields(),
                            error=f"{type(e).__name__}: {e}")
                outcome = "failed"
            if outcome == "lapsed":
                continue
            self._count(shard, outcome)
            if outcome == "failed":
                self._next[shard] = self.clock() + self.retry_every
            else:
                self._next.pop(shard, None)

    def _count(self, shard: int | str, outcome: str) -> None:
        with self._lock:
            self._counts[(shard, outcome)] += 1


def _order(item: tuple[tuple[int | str, str] | int | str, object]) -> tuple[bool, int, str]:
    """Shards by number, then the leader's Lease (keys of both kinds sort together)."""
    whole = item[0]
    key = whole[0] if isinstance(whole, tuple) else whole
    rest = whole[1] if isinstance(whole, tuple) else ""
    return (isinstance(key, str), key if isinstance(key, int) else 0, f"{key}/{rest}")
