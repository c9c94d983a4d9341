"""The invariants the chaos test holds after every step, as plain functions of what the
test saw (the clusters' own API before and after the step, the controller's status,
the model of the repo). Each returns the violations it finds, one line each.

1. alive: the controller answers `/healthz` with 200 and its task group is running;
2. residency: every live workload object (label `aifleet.dev/workload`) on a reachable
   cluster runs where the policy allows its dataClass, by the jurisdiction the applied
   commit gives that cluster;
3. nothing lost: a workload whose file still exists (valid, Invalid or unparseable) --
   in the applied commit, or in a head that descends from it (a force-pushed rollback
   is refused, 4) -- and that had live copies keeps one, unless every copy it had was
   on a cluster the repo retired (its Cluster file deleted, by an allowed commit) or
   that residency now forbids; and a commit that removes more than one Cluster file,
   or more than 30% of the workload files (and more than three), deletes nothing of
   them unless a commit since the applied one carries `Fleet-Allow: retire` /
   `Fleet-Allow: mass-deletion`
   (the second copy of a one-cluster workload going -- a failover's stale copy on a
   cluster that came back -- is cleanup, not a drain);
4. no rollback: the applied commit only ever moves to descendants (a force-pushed
   rollback is never applied, not even after a restart);
5. no gang Job runs on two reachable clusters at once -- judged while the Lease's home
   answers (with leader election): while it is down nobody may write, so a stale copy
   on a cluster that returns meanwhile goes once a leader is back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tests.chaos.fleet import ALLOWED, BY_ID, CLUSTERS, jurisdiction_in
from tests.chaos.steps import ALLOW_MASS, ALLOW_RETIRE, Model, clusters_in, workloads_in
from tests.chaos.world import Live

MASS_FRACTION = 0.3
MASS_MIN = 4
"""A mass deletion deletes more than 30% of the workloads and more than three (the
controller's `--max-deletion-fraction` default and its floor): in a fleet worn down to
a few workloads, deleting one or two is an ordinary change."""


@dataclass
class Judge:
    """Holds what the invariants need across steps: the commits the controller applied,
    the jurisdiction each cluster had in the last applied commit that named it."""

    model: Model
    descends: Callable[[str, str], bool]
    applied: list[str] = field(default_factory=list)
    jurisdiction: dict[str, str] = field(default_factory=lambda: dict(CLUSTERS))

    def observe_applied(self, applied: str | None) -> list[str]:
        """Invariant 4; also follows the jurisdictions of the commit in force."""
        if applied is None:
            return []
        out = [f"4 rollback applied: applied commit {applied[:8]} is not a descendant of "
               f"the earlier applied {old[:8]}"
               for old in self.applied[-1:] if not self.descends(applied, old)]
        if not self.applied or self.applied[-1] != applied:
            # (after a violation the rolled-back line is the reference: one rollback is
            # reported once, not again for every commit stacked on it)
            self.applied.append(applied)
        commit = self.model.commits.get(applied)
        if commit is not None:
            for name in CLUSTERS:
                j = jurisdiction_in(commit.files, name)
                if j is not None:
                    self.jurisdiction[name] = j
        return out

    def allowed_on(self, wid: str, cluster: str) -> bool:
        allowed = ALLOWED[BY_ID[wid].data_class]
        return allowed is None or self.jurisdiction[cluster] in allowed

    # ------------------------------------------------------------------ 2 and 5

    def residency(self, live: Live, down: Iterable[str]) -> list[str]:
        gone = set(down)
        return [f"2 residency: {wid} ({BY_ID[wid].data_class}) runs on {c} "
                f"({self.jurisdiction[c]})"
                for c in sorted(live) if c not in gone
                for wid in sorted(live[c]) if not self.allowed_on(wid, c)]

    def gangs(self, live: Live, down: Iterable[str]) -> list[str]:
        gone = set(down)
        out = []
        for wid, w in sorted(BY_ID.items()):
            if not w.gang:
                continue
            on = sorted(c for c in live if c not in gone and "Job" in live[c].get(wid, ()))
            if len(on) > 1:
                out.append(f"5 gang twice: {wid} has a Job on {on}")
        return out

    # ------------------------------------------------------------------ 3

    def nothing_lost(self, before: Live, after: Live, base: str | None,
                     applied: str | None) -> list[str]:
        """`base`: the applied commit before the step; `applied`: after it."""
        m = self.model
        head_files = m.files()
        in_force: set[str] = set()
        if applied is None or applied not in m.commits or self.descends(m.head, applied):
            # (a head that does not descend from the applied commit is a force-pushed
            # rollback the controller refuses, invariant 4: its files are not in force --
            # seed 6 step 196 of the long run at 38b368b: an allowed mass deletion
            # applied, main forced back to a commit with the files, the deleted
            # workloads' copies on a returning cluster rightly pruned)
            in_force |= workloads_in(head_files)
        if applied in m.commits:
            in_force |= workloads_in(m.commits[applied].files)
        kept_clusters = clusters_in(head_files)
        out: list[str] = []
        had = _copies(before)
        has = _copies(after)
        for wid in sorted(had):
            if wid not in in_force or has.get(wid):
                continue
            removable = [c for c in had[wid]
                         if c not in kept_clusters or not self.allowed_on(wid, c)]
            if len(removable) < len(had[wid]):
                out.append(f"3 lost: {wid} (file still in the repo) ran on "
                           f"{sorted(had[wid])} and now runs nowhere")
        out += self._mass(before, after, base)
        return out

    def _mass(self, before: Live, after: Live, base: str | None) -> list[str]:
        m = self.model
        if base is None or base not in m.commits or base == m.head:
            return []
        old, new = m.commits[base].files, m.files()
        retired = clusters_in(old) - clusters_in(new)
        deleted = workloads_in(old) - workloads_in(new)
        trailers = "\n".join(c.message for c in m.chain(base, m.head))
        out: list[str] = []
        guarded: list[tuple[str, Callable[[str, str], bool]]] = []
        kept = workloads_in(new)
        if len(retired) > 1 and ALLOW_RETIRE not in trailers:
            # (a workload whose own file went is the mass-deletion rule's to judge; and a
            # second copy of a workload that runs on one cluster -- a failover's stale
            # copy on a cluster that came back -- going is cleanup, not a drain)
            had, has = _copies(before), _copies(after)

            def drained(w: str, c: str) -> bool:
                duplicate = BY_ID[w].spread is None and bool(had.get(w, set()) - {c}) \
                    and bool(has.get(w, set()) - {c})
                return c in retired and w in kept and not duplicate

            guarded.append((f"removes {len(retired)} Cluster files {sorted(retired)} without "
                            f"`{ALLOW_RETIRE}`", drained))
        mass = len(deleted) > MASS_FRACTION * len(workloads_in(old)) and len(deleted) >= MASS_MIN
        if mass and ALLOW_MASS not in trailers:
            # A deleted workload's copy that moved (a failover's stale copy cleaned up on a
            # returning cluster) is not lost: only one that runs nowhere any more is.
            running_after = {w for ws in after.values() for w in ws}
            guarded.append((f"deletes {len(deleted)}/{len(workloads_in(old))} workload files "
                            f"without `{ALLOW_MASS}`",
                            lambda w, _c: w in deleted and w not in running_after))
        for why, covers in guarded:
            lost = sorted(f"{w}@{c}" for c, ws in before.items() for w in ws
                          if covers(w, c) and w not in after.get(c, {}))
            if lost:
                out.append(f"3 mass deletion: head {m.head[:8]} {why} (vs applied "
                           f"{base[:8]}), yet deleted {lost}")
        return out


def _copies(live: Live) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for c, ws in live.items():
        for w in ws:
            out.setdefault(w, set()).add(c)
    return out
