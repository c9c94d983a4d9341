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

# --------------------------------------------------------------------------- deletions


# ------------------------------------------------------------------ returning clusters


# ---------------------------------------------------------------- tenancy and identity


# ------------------------------------------------------------------------- the source
# Invariant: a head that is not a descendant of the last applied commit (a force-push
# rollback) is never planned without `--allow-non-fast-forward`, across restarts and
# replicas: the base is persisted (state dir and home cluster) and shared.


def fast_forward_base(local: str | None, shared: str | None, *,
                      shared_descends_local: bool) -> str | None:
    """The commit a new head must descend from: this replica's last applied commit
    (`local`, kept in its state dir) or the one the leader keeps in the home cluster
    (`shared`), whichever is newer. When they diverge the local one stays: a replica
    never loosens its own guard on another's word."""
    if shared is None:
        return local
    if local is None or shared_descends_local:
        return shared
    return local


def refuse_head(head: str, base: str | None, *, descends: bool,
                allow_non_fast_forward: bool) -> str:
    """Why `head` may not be planned, or "". `descends`: `head` is a descendant of
    `base` (False when `base` is unknown to the mirror: a commit force-pushed away
    before this mirror was made cannot be an ancestor of anything it fetched)."""
    if base is None or head == base or descends or allow_non_fast_forward:
        return ""
    return (f"new head {head[:12]} is not a descendant of the applied commit "
            f"{base[:12]} (force-push?); refused. Start the controller with "
            "--allow-non-fast-forward to accept it")
