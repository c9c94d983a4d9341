"""Held deletions: a commit that would delete too much waits, even across restarts.

`fleet.safety.held_deletions` decides (pure); this is the bookkeeping around it. The
whole commit is held, not only its deletions: applying the rest of a commit whose
deletions wait would mean a plan the repo never described (a workload removed from
the repo but still running, a retired cluster still placed on), and a re-plan of that
half-state could itself move things. So the last applied commit keeps being served,
as for an invalid commit, with the condition `DeletionsHeld` saying why and how to
allow it, until a later head carries the allowance (`Fleet-Allow: ...` in its message)
or no longer deletes too much (the change reverted). Because the applied commit's plan
stays the previous plan, a revert is planned with its stickiness: nothing moves.

The held commit and the applied commit it was held against are kept in
`<state dir>/held.json`: a restarted controller serves that applied commit first and
decides about the head only once it knows again what runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from pathlib import Path
from typing import cast

import structlog

from controllers.persist.statefile import (
    clear_held,
    load_adopted,
    load_held,
    save_adopted,
    save_held,
)
from fleet.safety import DeletionLimits, Hold, HoldReason, allowances, held_deletions
from workloads.gitsource import Condition
from workloads.loader import Snapshot

log = structlog.get_logger()

CONDITION = "DeletionsHeld"


class DeletionGuard:
    def __init__(self, state_dir: Path, limits: DeletionLimits) -> None:
        self.state_dir = state_dir
        self.limits = limits
        self.candidate: Snapshot | None = None
        """The newest commit not adopted yet: held, or waiting to be judged."""
        self.holds: tuple[Hold, ...] = ()
        self.judged = False
        """The candidate was judged (held): it stays so until another head comes."""
        self._restored = load_held(state_dir)
        self.last_adopted = load_adopted(state_dir)
        """The last commit adopted, by this process or the one before it."""

    def adopted(self, commit: str) -> None:
        """`commit` is taken: a restart serves it first and judges any newer head."""
        if commit == self.last_adopted:
            return
        self.last_adopted = commit
        try:
            save_adopted(self.state_dir, commit)
        except OSError as e:  # say it; a restart then starts from the applied commit
            log.warning("adopted_not_saved", error=f"{type(e).__name__}: {e}")

    def restored_base(self, head: str | None) -> str | None:
        """Once, at start: the applied commit to serve first, when a previous process
        held `head` (or an older head) against it."""
        restored, self._restored = self._restored, None
        if restored is None:
            return None
        commit, base, holds = restored
        if base is None or head == base:
            return None
        self.holds = tuple(Hold(cast(HoldReason, h.get("reason", "MassDeletion")),
                                h.get("message", ""), (), 0, h.get("allow", ""))
                           for h in holds)
        log.warning("deletions_held", commit=commit, base=base, restored=True,
                    reasons=[h.reason for h in self.holds])
        return base

    def judge(self, snap: Snapshot, live: Mapping[str, Set[str]], base: str | None, *,
              kept: Mapping[str, Set[str]] | None = None) -> bool:
        """May `snap` be adopted? Else it is held (and saved) against `base`.
        `kept`: see `fleet.safety.held_deletions`."""
        self.judged = True
        holds = held_deletions(
            live, clusters_after=set(snap.spec.clusters),
            workloads_after=set(snap.spec.workloads), protected=set(snap.spec.invalid),
            allow=allowances(snap.message), limits=self.limits, kept=kept)
        if not holds:
            self.release()
            return True
        changed = holds != self.holds or self.candidate is None or \
            self.candidate.commit != snap.commit
        self.candidate, self.holds = snap, holds
        if changed:
            for h in holds:
                log.warning("deletions_held", commit=snap.commit, base=base,
                            reason=h.reason, workloads=h.workloads,
                            clusters=list(h.clusters), message=h.message)
            try:
                save_held(self.state_dir, snap.commit or "", base, [
                    {"reason": h.reason, "message": h.message, "allow": h.allow}
                    for h in holds])
            except OSError as e:  # say it; a restart would then judge the head afresh
                log.warning("held_not_saved", error=f"{type(e).__name__}: {e}")
        return False

    def wait(self, snap: Snapshot) -> None:
        """Not judged yet (what runs is not known yet): keep it for later."""
        self.candidate, self.judged = snap, False

    def release(self) -> None:
        if self.holds:
            log.info("deletions_released",
                     commit=self.candidate.commit if self.candidate else None)
        self.candidate, self.holds = None, ()
        try:
            clear_held(self.state_dir)
        except OSError as e:
            log.warning("held_not_cleared", error=f"{type(e).__name__}: {e}")

    def condition(self) -> Condition | None:
        if not self.holds:
            return None
        commit = (self.candidate.commit or "")[:12] if self.candidate else ""
        return Condition(CONDITION, "True", self.holds[0].reason,
                         f"commit {commit or '(restored)'}: "
                         + " | ".join(h.message for h in self.holds)
                         + "; serving the last applied commit")
