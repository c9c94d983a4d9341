"""The decision record: the ledger (`--ledger`), its anchor, and the events feed.

A Manager-owned part. `record(event, workload, ...)` keeps a decision in the events feed
always and in the ledger only while this replica may act (a follower never writes a
ledger record; the reconciler gates its own the same way, `ClusterReconciler._event`).
`start(mirror, credentials)` starts the ledger once the source's mirror exists;
`problem()`/`blocked()` say when the ledger cannot take records (fail closed). Plan
changes become records here (`plan_events`: Placed, Moved, FailedOver, Pending), and
at each new leadership the ledger is made to agree with what runs (`reconcile`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import structlog

from clusters.adapter import ClusterAdapter
from controllers.persist.ledger import Ledger
from controllers.runtime.desired import DesiredState
from controllers.runtime.fleetstate import decision_fields
from controllers.runtime.reconcile import EventSink, live_manifest_digest
from controllers.settings import Settings
from controllers.status.eventfeed import EventFeed
from fleet.audit import open_placements
from fleet.ids import ClusterName, WorkloadId
from fleet.placement.types import Plan, PreviousPlan
from fleet.planning import placements
from fleet.render import workload_id_of_label, workload_label
from fleet.transitions import transition
from workloads.errors import WorkloadsError
from workloads.gitauth import GitAuth

if TYPE_CHECKING:
    from controllers.persist.anchor import LedgerAnchor

log = structlog.get_logger()

PENDING_LINES = 20
"""`workload_pending` lines per plan; past that, one `workloads_pending` line counts
the rest by reason (every one is still recorded)."""

JOURNAL_FILE = "ledger-journal.jsonl"
"""In the state dir: ledger entries and apply intents not yet known to be written."""


class Records:
    def __init__(self, settings: Settings, events: EventSink | None, feed: EventFeed, *,
                 desired: DesiredState, adapters: Mapping[str, ClusterAdapter],
                 may_act: Callable[[], bool],
                 task_group: Callable[[], anyio.abc.TaskGroup | None],
                 on_started: Callable[[EventSink], None]) -> None:
        self.settings = settings
        self.events = events
        """Where decisions go: the ledger once started (or a test's sink), else None."""
        self.anchor: LedgerAnchor | None = None
        """With --ledger-anchor: what pushes the ledger's head to the anchor."""
        self.feed = feed
        self.desired = desired
        self.adapters = adapters
        self.may_act = may_act
        self.task_group = task_group
        self.on_started = on_started
        """Told the ledger once it runs (the reconciler records into it too)."""

    # ------------------------------------------------------------------ the ledger

    def waiting_for(self, mirror: Path) -> bool:
        """`--ledger` is asked for and not started yet, and the mirror it pushes from
        exists now."""
        return self.settings.ledger and self.events is None and mirror.exists()

    def start(self, mirror: Path, credentials: GitAuth | None) -> None:
        """`--ledger`: decisions go to the repo's ledger branch, pushed from our mirror."""
        from controllers.persist.ledger import Journal
        from workloads.ledger_store import LedgerWriter

        settings = self.settings
        ledger = Ledger(LedgerWriter(mirror, remote="origin", credentials=credentials,
                                     signing_key=settings.ledger_signing_key),
                        journal=Journal(settings.state_dir / JOURNAL_FILE),
                        max_backlog=settings.ledger_max_backlog)
        self.events = ledger
        self.on_started(ledger)
        tg = self.task_group()
        assert tg is not None
        tg.start_soon(ledger.run)
        log.info("ledger_started", branch=ledger.writer.ref,
                 signed=settings.ledger_signing_key is not None)
        if settings.ledger_anchor:
            from controllers.persist.anchor import LedgerAnchor
            from workloads.ledger_trust import AnchorWriter

            # the fleet repo's credentials are never sent to the anchor's server
            self.anchor = LedgerAnchor(ledger, AnchorWriter(
                mirror, settings.ledger_anchor, key_path=settings.ledger_signing_key),
                interval=settings.ledger_anchor_interval)
            tg.start_soon(self.anchor.run)

    def problem(self) -> tuple[str, str] | None:
        """(condition type, why) while the ledger cannot take records, else None."""
        problem = getattr(self.events, "problem", None)
        return problem() if self.settings.ledger and problem is not None else None

    def blocked(self) -> str | None:
        """Why no cluster may be changed now (fail closed on the ledger), else None."""
        if not self.settings.ledger_fail_closed:
            return None
        problem = self.problem()
        return None if problem is None else f"{problem[0]}: {problem[1]}"

    def record(self, event: Any, workload: str, **fields: Any) -> None:
        """A decision: into the events feed always, marked with whether this replica
        acted; into the ledger only while it may act."""
        acting = self.may_act()
        self.feed.record(event, workload, acting=acting, **fields)
        if self.events is not None and acting:
            self.events.record(event, workload, **fields)

    def head(self) -> dict[str, Any] | None:
        """The ledger's head as this controller last wrote it, and the last anchor: what
        an auditor compares with `fleet ledger verify` (None without --ledger)."""
        last = getattr(self.events, "last", None)
        if not hasattr(self.events, "written"):
            return None
        anchor = self.anchor.last if self.anchor is not None else None
        return {"headSeq": last.seq if last is not None else 0,
                "headHash": last.hash if last is not None else None,
                "pending": getattr(self.events, "pending", 0),
                "signed": self.settings.ledger_signing_key is not None,
                "anchor": None if self.anchor is None else {
                    "seq": anchor.seq if anchor else None,
                    "hash": anchor.hash if anchor else None,
                    "ledgerCommit": anchor.ledger_commit if anchor else None,
                    "time": anchor.time if anchor else None,
                    "failures": self.anchor.failures, "error": self.anchor.error or None}}

    # ------------------------------------------------------------------ decisions

    def plan_events(self, old: Plan | None, new: Plan, live: PreviousPlan | None,
                    changed: Collection[WorkloadId] | None = None) -> None:
        """Log and record what the new plan decides differently from the old one (the
        last plan recorded: with --shards a stand-in for the leader's plan not
        published yet is not recorded, `PlacementLoop._record`).

        `changed`: `new` is `old` with only these decisions changed (each other one the
        same object, `ProcessPlacer.changes`): a decision that is the same object as the
        old one, diffed against the old plan's placements, records nothing (it arrives
        nowhere and was Pending before if it is now), so only these are looked at:
        O(changed), not O(workloads)."""
        if changed is not None and old is not None and live is None:
            before: PreviousPlan = {w: placed for w in changed
                                    if (was := old.workloads.get(w)) is not None
                                    and was.status == "Placed"
                                    and (placed := was.assignments)}
            items = sorted((w, new.workloads[w]) for w in changed)
        else:
            before = live if live is not None else ({} if old is None else placements(old))
            items = sorted(new.workloads.items())
        spec = self.desired.spec
        down = {ClusterName(c) for c, a in self.adapters.items()
                if a.health_state == "Unreachable"}
        pending: Counter[str] = Counter()
        newly = 0
        for wid, wp in items:
            prev = before.get(wid, ())
            old_status = old.workloads[wid].status if old and wid in old.workloads else None
            if wp.status == "Pending" and old_status != "Pending":
                reason = wp.reasons[0].message if wp.reasons else ""
                if newly < PENDING_LINES:
                    log.warning("workload_pending", workload=wid, reason=reason)
                newly += 1
                pending[reason[:200]] += 1
                self._decided("Pending", wid, commit=new.commit, reason=reason[:300])
            t = transition(prev, wp, down=down)  # one classifier with plan diff and what-if
            event, left = t.arrival_event, t.left
            if event is None:
                continue
            for a in wp.assignments:
                if a.cluster not in t.arrived:
                    continue
                c = spec.clusters.get(a.cluster) if spec else None
                log.info("workload_placed", workload=wid, cluster=a.cluster,
                         flavour=a.flavour, gpus=a.gpus, decision=event,
                         from_cluster=left[0] if left else None)
                self._decided(event, wid, cluster=a.cluster, flavour=a.flavour,
                              gpus=a.gpus, from_cluster=left[0] if left else None,
                              jurisdiction=c.spec.jurisdiction if c else None,
                              commit=new.commit, policy_version=new.policy_version or None)
        if newly > PENDING_LINES:
            # one line for the rest: 50,000 newly Pending workloads (a plan that saw
            # every cluster Unknown) were 50,000 warnings in seconds; each is still a
            # record in the events feed and the ledger
            log.warning("workloads_pending", workloads=newly, logged=PENDING_LINES,
                        reasons=dict(pending.most_common(5)))

    def _decided(self, event: str, wid: str, **fields: Any) -> None:
        fields = {**decision_fields(self.desired.spec, wid, fields.get("cluster")), **fields}
        fields.setdefault("commit", self.desired.head)  # decided at (Pending: no plan commit)
        self.record(event, wid, **{k: v for k, v in fields.items() if v is not None})

    async def reconcile(self, previous: PreviousPlan) -> bool:
        """Make the ledger agree with what runs, once, when this process starts to act.

        What a stopped process left behind: a period the ledger holds open on a cluster
        that does not show the workload is closed (`Pruned`, "not found at restart": a
        placement recorded but never applied, or a delete done but never recorded); an
        apply whose intent was journaled but never recorded is recorded from what the
        cluster shows; a workload of ours running with no open period is recorded as
        found. Only clusters that listed count: a cluster that does not answer proves
        nothing. False when the ledger could not be read (tried again at the next plan).
        """
        ledger = self.events
        if not isinstance(ledger, Ledger):
            return True
        try:
            rows = await anyio.to_thread.run_sync(ledger.writer.remote_events)
        except WorkloadsError as e:
            log.error("ledger_restart_reconcile_failed", error=str(e)[:300])
            return False
        opened = open_placements(chain(rows, ledger.buffered))
        live = {name: {str(workload_id_of_label(lbl)) for lbl in a.live_workloads()}
                for name, a in self.adapters.items() if a.synced.is_set()}
        shape = {(str(w), str(a.cluster)): a for w, assignments in previous.items()
                 for a in assignments}
        closed = found = 0
        for w, c in sorted(opened):
            if c in live and w not in live[c]:
                self._decided("Pruned", w, cluster=c, result="gone",
                              reason="not found at restart")
                closed += 1
        done: set[tuple[str, str]] = set()
        for intent in ledger.take_intents():
            for label in intent.workloads:
                w = str(workload_id_of_label(label))
                if intent.cluster in live and w in live[intent.cluster]:
                    done.add((w, intent.cluster))
        for c, ids in sorted(live.items()):
            for w in sorted(ids):
                if (w, c) in opened and (w, c) not in done:
                    continue
                a = shape.get((w, c))
                digest = live_manifest_digest(
                    self.adapters[c].workload_objects(workload_label(w)))
                why = ("applied by a process that stopped before recording it (its "
                       "journaled intent)") if (w, c) in done \
                    else "found running at restart with no record"
                self._decided("Applied", w, cluster=c, flavour=a.flavour if a else None,
                              gpus=a.gpus if a else 0, manifest_digest=digest, reason=why)
                found += 1
        log.info("ledger_reconciled_at_restart", open_periods=len(opened), closed=closed,
                 recorded=found)
        return True
