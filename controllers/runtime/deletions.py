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
decides about the head only once it knows again what runs. With a home cluster the
leader also keeps both there (`controllers.runtime.handover`), and the replica that takes
over holds what it held, even one that never saw it (a new pod).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from pathlib import Path
from typing import Any, cast

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
        self.saved: tuple[str, str | None, list[dict[str, str]]] | None = self._restored
        """What `held.json` says now: (commit, base, holds), or None (nothing held)."""

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
            self.saved = (snap.commit or "", base, [
                {"reason": h.reason, "message": h.message, "allow": h.allow} for h in holds])
            try:
                save_held(self.state_dir, *self.saved)
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
        self.saved = None
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

    # ------------------------------------------------ the home cluster's copy (handover)

    def shared_docs(self) -> dict[str, dict[str, Any]]:
        """`held` and `adopted` as the home cluster keeps them (the state files' bodies;
        `held` with commit None when nothing is held, so that it wins over a stale
        local file)."""
        commit, base, holds = self.saved if self.saved is not None else (None, None, [])
        return {"held": {"commit": commit, "base": base, "holds": holds},
                "adopted": {"commit": self.last_adopted}}

    def take_shared(self, held: dict[str, Any] | None, adopted: dict[str, Any] | None
                    ) -> tuple[str, str, list[dict[str, str]]] | None:
        """The leader's copies win (each only when there is one, and usable): what it
        adopted last, and what it holds. The hold is returned for the caller to serve
        its base when this replica has adopted the held commit; before anything is
        adopted it is served at start like a restart's (`restored_base`)."""
        if adopted is not None and adopted.get("version") == 1 and \
                isinstance(adopted.get("commit"), str):
            self.adopted(adopted["commit"])
        if held is None or held.get("version") != 1:
            return None
        commit, base, holds = held.get("commit"), held.get("base"), held.get("holds")
        if commit is None:
            # The leader holds nothing: a hold in this replica's own (older) file is
            # not served at start; a hold this process made itself stands.
            self._restored = None
            if not self.holds and self.saved is not None:
                self.saved = None
                try:
                    clear_held(self.state_dir)
                except OSError as e:
                    log.warning("held_not_cleared", error=f"{type(e).__name__}: {e}")
            return None
        if not isinstance(commit, str) or not (base is None or isinstance(base, str)) \
                or not isinstance(holds, list) or not all(
                    isinstance(h, dict) and all(isinstance(v, str) for v in h.values())
                    for h in holds):
            log.warning("shared_held_unusable", commit=str(commit)[:60])
            return None
        if base is None or self.holds:
            return None  # nothing to serve instead, or held here already
        self._restored = self.saved = (commit, base, holds)
        try:
            save_held(self.state_dir, commit, base, holds)
        except OSError as e:
            log.warning("held_not_saved", error=f"{type(e).__name__}: {e}")
        return commit, base, holds

    def hold_restored(self, snap: Snapshot) -> None:
        """Hold `snap` (the commit the leader held) as the restored hold says, without
        judging it again now; a later head is judged as usual."""
        restored, self._restored = self._restored, None
        if restored is None:
            return
        _, base, holds = restored
        self.candidate, self.judged = snap, True
        self.holds = tuple(Hold(cast(HoldReason, h.get("reason", "MassDeletion")),
                                h.get("message", ""), (), 0, h.get("allow", ""))
                           for h in holds)
        log.warning("deletions_held", commit=snap.commit, base=base, restored=True,
                    reasons=[h.reason for h in self.holds])
