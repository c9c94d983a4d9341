"""The safety invariants of the controller, in one pure place.

A GitOps controller's first promise is "nothing lost". Every decision that deletes,
moves or refuses something on a cluster is checked here, by plain functions over plain
data (no I/O, no clock: the caller passes what it saw and when), so a table test can
hold each invariant and `docs/safety.md` can name the function and the test.

Sections (one per kind of decision; each function says which invariant it holds):

- deletions: what a commit may delete (empty plans, retiring clusters, mass deletions,
  workloads that are Invalid, unparseable or Pending only because a cluster is away);
- returning clusters: which plan a cluster that was away may be reconciled against;
- tenancy and identity: who may write what, which Cluster files name the same cluster,
  where the fencing generation comes from.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Literal

# --------------------------------------------------------------------------- deletions
#
# A commit may delete what runs only within limits it cannot cross by accident: a
# folder move, a deleted `clusters/` or a bad script looks like "remove everything".
# `held_deletions` is the one decision; the controller holds the whole commit when it
# says so (the last applied commit keeps being served) until a later commit carries
# the allowance in its head commit message, or the change is reverted.

ALLOW_RETIRE = "retire"
"""`Fleet-Allow: retire`: retire more clusters in one commit than the limit."""
ALLOW_MASS_DELETION = "mass-deletion"
"""`Fleet-Allow: mass-deletion`: delete above the fraction, or leave an empty fleet."""
TRAILER = "fleet-allow"

HoldReason = Literal["EmptyFleet", "RetireLimit", "MassDeletion"]


@dataclass(frozen=True, slots=True)
class DeletionLimits:
    max_retire_per_commit: int = 1
    """Clusters one commit may retire (remove the Cluster file of) without an allowance."""
    max_deletion_fraction: float = 0.3
    """Above this share of a cluster's or the fleet's live workloads a deletion waits..."""
    min_deletions: int = 3
    """...and only when it deletes more than this many workloads too: deleting 1 of 2
    is an ordinary change on a small fleet, not a mass deletion."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a commit's deletions wait, and what allows them."""

    reason: HoldReason
    message: str
    clusters: tuple[str, ...]
    workloads: int
    """How many live workloads the commit would delete (or drain)."""
    allow: str
    """The allowance (`Fleet-Allow: <allow>`) that lets it through."""


def allowances(message: str) -> frozenset[str]:
    """The `Fleet-Allow:` values in a commit message's trailers (its last paragraph):
    `Fleet-Allow: retire, mass-deletion` or one per line; case-insensitive."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if not paragraphs:
        return frozenset()
    out: set[str] = set()
    for line in paragraphs[-1].splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == TRAILER:
            out |= {v.strip().lower() for v in value.split(",") if v.strip()}
    return frozenset(out)


def held_deletions(live: Mapping[str, Set[str]], *, clusters_after: Set[str],
                   workloads_after: Set[str], protected: Set[str] = frozenset(),
                   allow: Set[str] = frozenset(),
                   limits: DeletionLimits = DeletionLimits(),
                   kept: Mapping[str, Set[str]] | None = None) -> tuple[Hold, ...]:
    """What of a new commit's deletions must wait; () when it may be applied.

    `live`: every cluster of the applied commit -> the workload ids running there now;
    `clusters_after`, `workloads_after`: the new commit's clusters and valid workloads;
    `protected`: workloads still in the repo but Invalid (never deleted, never counted);
    `allow`: the head commit's allowances; `kept`, when the new commit's plan is known:
    per cluster, what that plan keeps there (anything else running there is deleted or
    moved away by the commit; without it, only workloads gone from the repo are).
    Invariants held:

    - a commit that leaves no cluster or no valid workload while workloads run
      (`EmptyFleet`) needs `mass-deletion`;
    - retiring more than `max_retire_per_commit` clusters at once (`RetireLimit`) needs
      `retire`;
    - pruning more than `min_deletions` workloads AND more than
      `max_deletion_fraction` of a cluster's live workloads, or (prunes and drains of
      retired clusters together) of the fleet's (`MassDeletion`), needs
      `mass-deletion`; moving a workload away from a cluster counts as deleting it
      there. A retired cluster's workloads are re-placed, not lost: they count towards
      the fleet's share only, the retire limit governs the cluster.
    """
    holds: list[Hold] = []
    running = {c: set(ws) - set(protected) for c, ws in sorted(live.items())}
    total = len(set().union(*live.values())) if live else 0
    retired = sorted(c for c in live if c not in clusters_after)
    if total and (not clusters_after or not workloads_after) \
            and ALLOW_MASS_DELETION not in allow:
        what = "no cluster" if not clusters_after else "no valid workload"
        holds.append(Hold("EmptyFleet", (
            f"the commit leaves {what} while {total} workload{_s(total)} run: held, "
            f"nothing deleted; to apply it, add the trailer "
            f"'Fleet-Allow: {ALLOW_MASS_DELETION}' to a later commit's message, or "
            "revert it"), tuple(sorted(live)), total, ALLOW_MASS_DELETION))
    if len(retired) > limits.max_retire_per_commit and ALLOW_RETIRE not in allow:
        drained = len(set().union(*(running[c] for c in retired)))
        holds.append(Hold("RetireLimit", (
            f"the commit retires {len(retired)} clusters ({', '.join(retired)}; at most "
            f"{limits.max_retire_per_commit} per commit), draining {drained} "
            f"workload{_s(drained)}: held; to apply it, add the trailer "
            f"'Fleet-Allow: {ALLOW_RETIRE}' to a later commit's message, or revert it"),
            tuple(retired), drained, ALLOW_RETIRE))
    pruned = {c: ws - set(workloads_after if kept is None else kept.get(c, ()))
              for c, ws in running.items() if c not in retired}
    over = [c for c, ws in pruned.items()
            if _too_many(len(ws), len(live[c]), limits)]
    gone = set().union(*pruned.values(), *(running[c] for c in retired)) if live else set()
    fleet_over = _too_many(len(gone), total, limits)
    if (over or fleet_over) and ALLOW_MASS_DELETION not in allow:
        where = ", ".join(f"{c} {len(pruned[c])}/{len(live[c])}" for c in over)
        holds.append(Hold("MassDeletion", (
            f"the commit would delete or move away {len(gone)} of {total} live workloads"
            + (f" ({where})" if where else "")
            + f"; above {limits.max_deletion_fraction:.0%} (and more than "
            f"{limits.min_deletions}): held, nothing deleted; to apply it, add the "
            f"trailer 'Fleet-Allow: {ALLOW_MASS_DELETION}' to a later commit's message, "
            "or revert it"), tuple(over or sorted(live)), len(gone), ALLOW_MASS_DELETION))
    return tuple(holds)


def _too_many(deleted: int, live: int, limits: DeletionLimits) -> bool:
    return deleted > limits.min_deletions and deleted > limits.max_deletion_fraction * live


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def drainable(live: Set[str], protected: Set[str]) -> set[str]:
    """What a drain (a retiring cluster) may delete of what runs there: never the copy
    of a workload that is Invalid in the applied commit (its last good state); that
    cluster then stays retiring, and says so, until the workload is valid or gone."""
    return set(live) - set(protected)


# ------------------------------------------------------------------ returning clusters


# ---------------------------------------------------------------- tenancy and identity
