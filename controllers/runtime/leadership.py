"""Leadership: whether this replica may write, and the fence on every write.

Without `--leader-elect` every replica acts (one runs). With it, the Lease in the home
cluster (`clusters.home`, `clusters.leader`) decides, and a new leader acts only once it
has read what the previous one left in the home (`prepare`:
`controllers.runtime.handover.take_over`): only the leader writes to
clusters, the ledger, the forge and shared state, and every write an adapter makes
carries the leader's generation and re-confirms the Lease first (the fence). Nobody
acts while the source holds a refused rollback (`GitSource.holding`), and no adapter
writes while the ledger cannot record it (`blocked`).

The Manager owns one `Leadership`; the watch loop asks `newly_leading()` once per tick
to rebuild its view from what runs when leadership is gained.

The held leader Lease is renewed by the replica's `LeaseKeeper` (`clusters.leasekeeper`:
its own thread and HTTP client), not on the event loop, so a busy loop (a placement
pass, a big reconcile) does not lose leadership; the loop beats every 0.25 s and the
keeper renews only while the last beat is younger than `--lease-liveness` (default the
Lease duration), so a hung loop does. Taking the Lease stays on the loop
(`LeaderElector.run`). With `--shards` the same keeper renews the shard Leases.

A stop that runs its cleanup (SIGTERM, SIGINT: how Kubernetes ends a pod in a rolling
update) lets every Lease this replica holds go (`release`), as client-go's
ReleaseOnCancel does, so the others take its leadership and shards at once instead of
a Lease duration later. Only once no writer of the replica is left (the Manager's
cleanup: `controllers.runtime.manager.Manager.run`): a write of ours landing after a
peer took the Lease would be two writers at once. Bounded (`release_within`); a Lease
that cannot be let go (the home unreachable) lapses as after a SIGKILL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import anyio
import structlog

from clusters.adapter import ClusterAdapter
from clusters.home import Home
from clusters.leader import LeaderElector, default_identity
from clusters.leasekeeper import LeaseKeeper

log = structlog.get_logger()


RELEASE_WITHIN = 5.0
"""Seconds a stop spends at most letting its Leases go: client-go bounds its release by
RenewDeadline (10 s of the default 15 s Lease); a pod has 30 s (its default
terminationGracePeriodSeconds) from SIGTERM to SIGKILL."""


class Leadership:
    def __init__(self, *, elect: bool, identity: str | None, home: Home,
                 adapters: Mapping[str, ClusterAdapter], holding: Callable[[], bool],
                 blocked: Callable[[], str | None], tick: float,
                 lease_duration: float,
                 prepare: Callable[[], Awaitable[bool]] | None = None,
                 lease_liveness: float | None = None) -> None:
        self.elect = elect
        self.identity = identity
        self.home = home
        self.adapters = adapters
        self.holding = holding
        """The source serves a refused rollback: write nothing from it."""
        self.blocked = blocked
        """Why the ledger cannot record a write now, or None."""
        self.tick = tick
        self.lease_duration = lease_duration
        self.prepare = prepare
        """Before a new leader acts: read what the previous one left in the home
        (`controllers.runtime.handover.take_over`); True when done."""
        self._prepared = -1
        """The generation `prepare` succeeded for."""
        self.elector: LeaderElector | None = None
        self.liveness = lease_liveness or lease_duration
        self.keeper = LeaseKeeper(renew_every=lease_duration / 3, liveness=self.liveness)
        """Renews the held Leases (the leader's; with --shards the shards' too) from its
        own thread while the loop beats; started by `run` (with --leader-elect)."""
        self.beat_every = min(0.25, self.liveness / 4)
        """Seconds between the loop's beats to the keeper."""
        self._wired_generation = -1
        self._was_leader = False
        self.release_within = min(RELEASE_WITHIN, lease_duration / 3)
        """Seconds a stop spends at most letting its Leases go (`release`)."""
        self.release_on_stop = True
        """False: a stop leaves its Leases to lapse, as a SIGKILL does (what a test or a
        bench standing in for a killed replica sets)."""

    def holds_lease(self) -> bool:
        """What runs on the clusters is this replica's to keep: no election, or the
        leader Lease held (also while a refused rollback holds writes back, or before
        the previous leader's state is read: drift is still looked for then)."""
        return not self.elect or (self.elector is not None and self.elector.is_leader)

    def may_act(self) -> bool:
        if self.holding():
            return False
        if not self.elect:
            return True
        if self.elector is None or not self.elector.is_leader:
            return False
        if self.prepare is not None and self._prepared != self.elector.generation:
            return False  # holds the Lease, has not read the previous leader's state yet
        if self.elector.generation != self._wired_generation:
            self.wire_all()  # every write from now on carries the new generation
        return True

    def newly_leading(self) -> bool:
        """True once each time this replica becomes the leader (with --leader-elect);
        every adapter is then wired to the new generation."""
        leader = self.may_act()
        gained = leader and not self._was_leader and self.elect
        self._was_leader = leader
        if gained:
            log.info("leading", generation=self.elector.generation if self.elector else 0)
            self.wire_all()
        return gained

    def wire(self, adapter: ClusterAdapter) -> None:
        """Fence the adapter's writes."""
        # Every write (drift corrections too) waits while the ledger cannot record it.
        adapter.applier.may_write = lambda: self.blocked() is None
        if not self.elect:
            return
        adapter.applier.may_write = lambda: self.may_act() and self.blocked() is None
        adapter.applier.owns = self.holds_lease  # lost: the new leader's writes
        adapter.applier.generation = self.elector.generation if self.elector else 0
        adapter.applier.lease_check = self.confirm_lease

    def wire_all(self) -> None:
        self._wired_generation = self.elector.generation if self.elector else 0
        for a in self.adapters.values():
            self.wire(a)

    async def confirm_lease(self) -> str | None:
        """The fence of every write: the Lease still names us at our generation."""
        if self.elector is None:
            return "no leader election running yet"
        return await self.elector.confirm()

    async def run(self) -> None:
        """The Lease in the home cluster, once it can be reached."""
        while True:
            client = self.home.client()
            if client is not None:
                break
            await anyio.sleep(self.tick)
        self.elector = LeaderElector(client, self.identity or default_identity(),
                                     namespace=self.home.namespace,
                                     duration=self.lease_duration,
                                     margin=min(2.0, self.lease_duration / 4))
        log.info("leader_election_started", cluster=self.home.name,
                 namespace=self.home.namespace,
                 identity=self.elector.identity)
        keeper = self.keeper
        self.elector.kept = lambda: keeper.alive
        keeper.keep(self.elector)
        keeper.beat(client.transport.cfg)
        keeper.start()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._beat_loop)
                tg.start_soon(self.elector.run, self.home.client)
                if self.prepare is not None:
                    tg.start_soon(self._take_over, self.elector, self.prepare)
        finally:
            # A stop ends the renewals here; the Leases are let go later, once nothing
            # of this replica writes any more (`release`, from the Manager's cleanup).
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(keeper.stop)

    async def release(self, writing: Callable[[], bool] = lambda: False) -> int:
        """Let every Lease this replica took go (the leader's, its shards'), in
        parallel, within `release_within` seconds; how many were let go. Call it only
        once no writer of this replica is left, nor can start: each Lease's fence
        is dropped first, but a write already past it must have landed before the
        Lease is free. `writing`: a writer outside the Manager's task group is still
        under way (an operator action, cancelled with its request): waited for
        within the same bound, and while it lasts nothing is let go. A Lease that
        changed hands is left alone, one not let go in time lapses
        (`clusters.leader.LeaderElector.release`)."""
        if not self.elect or not self.release_on_stop:
            return 0
        deadline = anyio.current_time() + self.release_within
        with anyio.move_on_after(self.release_within):
            while writing():  # noqa: ASYNC110 - a count of tasks outside any group
                await anyio.sleep(0.05)
        if writing():
            log.warning("leases_not_released", reason="an operator action is under way")
            return 0
        await anyio.to_thread.run_sync(self.keeper.stop)  # no renew races the release
        leases = [lease for lease in self.keeper.kept() if lease.hold.renewed is not None]
        client = self.home.client()
        if not leases:
            return 0
        if client is None:
            log.warning("leases_not_released", reason="the home cluster is not connected",
                        leases=[lease.name for lease in leases])
            return 0
        released: list[str] = []

        async def let_go(lease: LeaderElector) -> None:
            # a stop leaves leaseDurationSeconds 1, as client-go's ReleaseOnCancel
            if await lease.release(client, duration=1):
                released.append(lease.name)

        with anyio.move_on_after(deadline - anyio.current_time()) as scope:
            async with anyio.create_task_group() as tg:
                for lease in leases:
                    tg.start_soon(let_go, lease)
        if scope.cancelled_caught:
            log.warning("leases_release_timed_out", within=self.release_within,
                        released=sorted(released))
        return len(released)

    async def _beat_loop(self) -> None:
        """The keeper's sign that this loop is alive (and how to reach the home)."""
        while True:
            client = self.home.client()
            self.keeper.beat(client.transport.cfg if client is not None else None)
            await anyio.sleep(self.beat_every)

    async def _take_over(self, elector: LeaderElector,
                         prepare: Callable[[], Awaitable[bool]]) -> None:
        """Each time this replica wins the Lease (a new generation): `prepare` until it
        succeeds (each tick), and only then may it act."""
        while True:
            await anyio.sleep(self.tick)
            generation = elector.generation
            if not elector.is_leader or self._prepared == generation:
                continue
            try:
                ready = await prepare()
            except Exception as e:  # noqa: BLE001 - the loop driver: try again, never die
                log.error("takeover_failed", error=f"{type(e).__name__}: {e}")
                ready = False
            if ready and elector.is_leader and elector.generation == generation:
                self._prepared = generation
                log.info("takeover_ready", generation=generation)
