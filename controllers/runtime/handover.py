"""Nothing is lost on leader handover: the leader keeps in the home cluster every piece
of state-dir state a decision depends on, and a replica reads it before it acts.

What lives in the state dir (`--state-dir`), what a decision needs it for, and its
shared copy (a ConfigMap of the controller's namespace in the home cluster):

- `suspended.json`: suspended workloads and clusters are left alone;
  `aifleet-state-suspended`;
- `held.json`: a commit whose deletions are held is not applied; `aifleet-state-held`;
- `adopted.json`: the commit a restart serves before it judges a newer head;
  `aifleet-state-adopted`;
- `retiring.json`: removed clusters still being drained, and how to reach them;
  `aifleet-state-retiring`;
- `source.json`: the applied commit a head must descend from (a rollback is refused);
  `aifleet-source` (`controllers.runtime.sourceguard`, read at every fetch);
- `last-plan.json`: where workloads ran, for clusters down at start;
  `aifleet-last-plan` (`controllers.persist.sharedplan`, read at each rebuild).

Not shared: `mirror.git` (a cache of the fleet repo, fetched again) and
`ledger-journal.jsonl` (ledger records not yet pushed: a new leader records what runs
from the clusters, `reconcile_ledger`; see docs/safety.md "What is not covered").

The rules:
- only the leader writes (`controllers.persist.sharedstate`: fenced like its cluster
  writes), each piece when it changes (`keep_shared`, every tick; a suspension before
  `fleet suspend` is answered: `publish`);
- a replica reads every piece at its first fetch (`before_fetch`: a new pod starts from
  the leader's state) and again when it wins the Lease, before its first write
  (`take_over`: `Leadership` does not let it act until this has succeeded, so a home
  that cannot be read means no writes, never writes on stale state). A follower also
  refreshes the suspensions at each fetch, so its status says what the leader's says;
- the home's copy wins over the state dir's when both exist; with none in the home
  (a first start, a replica that just got a home) the local file stands and the leader
  publishes it; without a home nothing changes (the state dir alone, as before).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import anyio
import structlog

from clusters.configmap import get_configmap
from clusters.errors import ClusterError
from controllers.persist.sharedstate import PIECES, SharedStore, Unreadable
from controllers.runtime import sourceguard

if TYPE_CHECKING:
    from clusters.home import Home
    from controllers.runtime.clusterset import ClusterSet
    from controllers.runtime.desired import DesiredState
    from controllers.runtime.leadership import Leadership
    from controllers.runtime.retirement import Retirement
    from controllers.runtime.sourceloop import SourceLoop
    from controllers.runtime.suspension import Suspensions
    from controllers.settings import Settings

log = structlog.get_logger()


class Host(Protocol):
    """What handover reads and calls of the Manager, and nothing else of it: the parts
    whose state is shared (suspensions, retirement, the source loop's holds, source and
    conditions), the home, the Lease, whether this replica may act, and a re-plan."""

    @property
    def settings(self) -> Settings: ...
    @property
    def tick(self) -> float: ...
    @property
    def startup_sync_timeout(self) -> float: ...
    @property
    def home(self) -> Home: ...
    @property
    def shared(self) -> SharedState: ...
    @property
    def suspensions(self) -> Suspensions: ...
    @property
    def retirement(self) -> Retirement: ...
    @property
    def desired(self) -> DesiredState: ...
    @property
    def clusters(self) -> ClusterSet: ...
    @property
    def sources(self) -> SourceLoop: ...
    @property
    def leadership(self) -> Leadership: ...
    def may_act(self) -> bool: ...
    def trigger_plan(self) -> None: ...

RETRY_EVERY = 2.0
"""Seconds between attempts to write a piece the home did not take."""


class SharedState:
    """The Manager's handle on the shared pieces: the store, what is in the home now
    (as far as this replica wrote or read it), and whether it read them yet."""

    def __init__(self, store: SharedStore) -> None:
        self.store = store
        self.published: dict[str, dict[str, Any]] = {}
        self.loaded = False
        """The pieces were read once (first fetch or take-over): only then may this
        replica publish its own (never its stale cache over the leader's)."""
        self.error = ""
        """Why the last publish failed, or ""."""
        self.lock = anyio.Lock()
        """One publish at a time (the loop's and `fleet suspend`'s)."""


def make(m: Host) -> SharedState:
    """The Manager's `SharedState` (the home client, fenced as its other writes)."""

    async def no_fence() -> str | None:
        return None

    elect = m.settings.leader_elect
    return SharedState(SharedStore(
        m.home.client, m.may_act, m.home.namespace,
        m.leadership.confirm_lease if elect else no_fence,
        lambda: (m.leadership.elector.generation if m.leadership.elector is not None else 0)
        if elect else None))


def local_docs(m: Host) -> dict[str, dict[str, Any]]:
    """Every piece as this replica holds it, in its state file's format."""
    docs = {"suspended": m.suspensions.to_doc(), **m.sources.deletions.shared_docs(),
            "retiring": m.retirement.to_doc()}
    return {name: {"version": 1, **doc} for name, doc in docs.items()}


async def publish(m: Host) -> str | None:
    """Write the pieces that changed since they were last in the home (the leader
    only, once it read them); None when the home has them all, else why not."""
    shared = m.shared
    if not m.home.configured or not shared.loaded or not m.may_act():
        return None
    async with shared.lock:
        why: str | None = None
        for name, doc in local_docs(m).items():
            if shared.published.get(name) == doc:
                continue
            failed = await shared.store.write(name, doc)
            if failed is None:
                shared.published[name] = doc
                log.info("shared_state_saved", piece=name)
            else:
                why = why or failed
        if (why or "") != shared.error and why:
            log.warning("shared_state_not_saved", error=why)
        shared.error = why or ""
        return why


async def keep_shared(m: Host) -> None:
    """Publish what changed, every tick (after a failure, every `RETRY_EVERY`)."""
    while True:
        try:
            failed = await publish(m)
        except Exception as e:  # noqa: BLE001 - the loop driver: say it, try again
            failed = m.shared.error = f"{type(e).__name__}: {e}"
            log.error("shared_state_publish_failed", error=failed)
        await anyio.sleep(RETRY_EVERY if failed else m.tick)


async def load(m: Host, *, strict: bool) -> bool:
    """Read every piece; the home's copy wins. False when the home could not be read
    (with `strict`, at the first piece that cannot; else the rest are still read)."""
    ok = True
    docs: dict[str, dict[str, Any] | None] = {}
    for name in PIECES:
        try:
            docs[name] = await m.shared.store.read(name)
        except Unreadable as e:
            log.warning("shared_state_unreadable", piece=name, error=str(e))
            if strict:
                return False
            ok = False
    for name, doc in docs.items():
        if doc is not None:
            m.shared.published[name] = doc
    if docs.get("suspended") is not None:
        before = m.suspensions.to_doc()
        if m.suspensions.replace(docs["suspended"] or {}) and m.suspensions.to_doc() != before:
            log.info("suspensions_from_home", workloads=sorted(m.suspensions.workloads),
                     clusters=sorted(m.suspensions.clusters))
    if "held" in docs or "adopted" in docs:
        hold = m.sources.deletions.take_shared(docs.get("held"), docs.get("adopted"))
        if hold is not None:
            await _serve_held_base(m, hold[0], hold[1])
    retiring = docs.get("retiring")
    if retiring is not None and m.retirement.take(retiring) and m.desired.spec is not None:
        await m.clusters.sync(m.desired.spec)  # connect them, and queue their drains
    m.shared.loaded = m.shared.loaded or ok
    return ok


async def _serve_held_base(m: Host, commit: str, base: str) -> None:
    """The leader held `commit` against `base`; this replica adopted `commit` (it never
    saw it held): serve `base` again, and hold `commit` as the leader did. Before
    anything is adopted the hold is served at start (`DeletionGuard.restored_base`)."""
    if m.desired.spec is None or m.desired.head != commit:
        return
    source = m.sources.source
    served = await source.read(base)
    held = source.last_good if source.last_good is not None and \
        source.last_good.commit == commit else await source.read(commit)
    if served is None or held is None:
        log.error("held_base_unreadable", commit=commit, base=base)
        return
    log.warning("deletions_held_by_leader", commit=commit, base=base)
    m.sources.deletions.hold_restored(held)
    condition = m.sources.deletions.condition()
    m.sources.conditions = tuple(c for c in m.sources.conditions if c.type != "DeletionsHeld") + (
        (condition,) if condition is not None else ())
    await m.sources.adopt(served)


async def before_fetch(m: Host) -> None:
    """At each fetch, after the leader's applied commit is read (`SourceLoop`): the
    first time, every piece (waiting a while for the home's first connection); on a
    follower, the suspensions again (its status says what the leader's says)."""
    if not m.home.configured:
        return
    try:
        await _refresh(m)
    except Exception as e:  # noqa: BLE001 - the source loop must not die of it
        log.error("shared_state_read_failed", error=f"{type(e).__name__}: {e}")


async def _refresh(m: Host) -> None:
    if not m.shared.loaded:
        if m.home.is_management:
            with anyio.move_on_after(m.startup_sync_timeout):
                await m.home.connected.wait()
        if m.home.client() is not None:
            await load(m, strict=False)
        return
    if m.settings.leader_elect and not m.may_act():
        try:
            doc = await m.shared.store.read("suspended")
        except Unreadable:
            return
        if doc is not None:
            m.suspensions.replace(doc)


async def take_over(m: Host) -> bool:
    """This replica holds the Lease: before it may act, the home's state. True when
    read and taken; False (not acting yet, tried again next tick) when the home cannot
    be read, while the commit it serves does not descend from the leader's applied
    commit (a rollback it took while it could not read the home: a fetch now refuses
    it and serves that commit), and until the commit it serves is planned."""
    client = m.home.client()
    if client is None:
        return False
    try:
        cm = await get_configmap(client, sourceguard.CONFIGMAP, namespace=m.home.namespace)
    except (ClusterError, TimeoutError) as e:
        log.warning("takeover_waits_for_home", error=f"{type(e).__name__}: {e}")
        return False
    applied: str | None = None
    if cm is not None:
        try:
            applied = sourceguard.from_doc(dict(cm.get("data") or {})).applied
        except (ValueError, TypeError) as e:
            log.warning("shared_source_guard_unusable", error=f"{type(e).__name__}: {e}")
    if applied is not None:
        m.sources.source.shared_applied = applied
        if not await _serves_from(m, applied):
            log.warning("takeover_waits_for_base", serving=m.desired.head, applied=applied)
            m.sources.trigger()
            return False
    if not await load(m, strict=True):
        return False
    plan = m.desired.plan
    if plan is not None and plan.commit != m.desired.head:
        # What it serves changed (a held commit's base served again, or a commit just
        # adopted): act on its plan, never on the previous commit's.
        m.trigger_plan()
        return False
    log.info("leadership_taken_over", suspended=len(m.suspensions.workloads)
             + len(m.suspensions.clusters), held=m.sources.deletions.saved is not None,
             retiring=sorted(m.retirement.names))
    return True


async def _serves_from(m: Host, applied: str) -> bool:
    """Does what this replica serves (or its source last read) descend from `applied`?"""
    served = m.desired.head
    if served is None:
        return True  # nothing adopted: nothing to write from
    source = m.sources.source
    for commit in (served, source.last_good.commit if source.last_good else None):
        if commit is not None and await source.descends(commit, applied):
            return True
    return False
