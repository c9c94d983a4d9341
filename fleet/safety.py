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
