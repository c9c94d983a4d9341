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

from collections.abc import Iterable, Mapping

# --------------------------------------------------------------------------- deletions


# ------------------------------------------------------------------ returning clusters


# ---------------------------------------------------------------- tenancy and identity
#
# A cluster is its API server: two Cluster files whose contexts reach the same server
# are one cluster under two names (one labelled DE, really the US cluster, say). Each
# would prune the other's workloads, and residency could be "satisfied" by the twin.
# Both are refused: not connected, nothing written there, nothing new placed there.


def server_identity(server: str) -> str:
    """The identity of a kubeconfig `server` URL: scheme and host lowercased, the
    scheme's default port and a trailing slash dropped, so spellings of one server
    compare equal."""
    scheme, sep, rest = server.strip().partition("://")
    if not sep:
        scheme, rest = "https", server.strip()
    scheme = scheme.lower()
    host, slash, path = rest.partition("/")
    host = host.lower().rpartition("@")[2]
    default = {"https": ":443", "http": ":80"}.get(scheme)
    if default and host.endswith(default):
        host = host[: -len(default)]
    path = (slash + path).rstrip("/")
    return f"{scheme}://{host}{path}"


def shared_servers(servers: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Cluster name -> every cluster on the same API server (itself included, sorted),
    for the clusters that share their server with another; `servers` maps each Cluster
    file's name to its context's server URL. These clusters must all be refused."""
    by_server: dict[str, list[str]] = {}
    for name in sorted(servers):
        by_server.setdefault(server_identity(servers[name]), []).append(name)
    return {name: tuple(names) for names in by_server.values() if len(names) > 1
            for name in names}


# Tolerations. Kubernetes lets `{operator: Exists}` without a key tolerate every taint;
# a workload author (any team) would then pass the taints the platform sets on a whole
# cluster to keep workloads off it. Keys in the aifleet.dev domain (`aifleet.dev/...`,
# `<anything>.aifleet.dev/...`) are the fleet's own taints, for safety and residency
# (a quarantined cluster, a residency hold): only a toleration naming the key passes.

RESERVED_TAINT_DOMAIN = "aifleet.dev"


def reserved_taint(key: str) -> bool:
    """Whether a taint key is one of the fleet's own (the aifleet.dev domain)."""
    prefix, sep, _name = key.partition("/")
    if not sep:
        return False
    return prefix == RESERVED_TAINT_DOMAIN or prefix.endswith("." + RESERVED_TAINT_DOMAIN)


def wildcard_tolerates(taint_key: str) -> bool:
    """Whether a toleration without a key (`operator: Exists`) tolerates this taint:
    every taint but the fleet's own."""
    return not reserved_taint(taint_key)


# Fencing. Only the holder of the Lease may write, and a deposed leader (paused, then
# resumed still believing it leads) must not undo its successor's writes. The
# generation that decides it comes from the Lease, which lives in the controller's own
# namespace, never from an annotation on objects tenants can edit: an annotation
# `aifleet.dev/lease-generation: "999"` on a tenant's Deployment decides nothing.


def fence_refusal(ours: int, lease_holder: str | None, lease_generation: int | None,
                  identity: str) -> str | None:
    """None when a writer of generation `ours` (identity `identity`) may write, given
    the Lease as last read; else why not."""
    if lease_generation is None:
        return "the Lease cannot be read: not writing"
    if lease_holder != identity:
        return f"the Lease is held by {lease_holder!r}, not by us ({identity!r})"
    if lease_generation != ours:
        return f"the Lease is at generation {lease_generation}; we are {ours}"
    return None


def prune_held_back(failed: Iterable[str | None]) -> frozenset[str] | None:
    """The workloads whose objects a cluster's prune must leave alone because an apply
    of theirs failed in the same pass (`failed`: the workload label of each failed
    object, None for a Namespace or an unlabelled object); None: prune nothing, since
    it is not known whose objects are safe. One failed object -- which a tenant can
    cause -- must not stop the prune of every other workload on the cluster."""
    labels = list(failed)
    if any(label is None for label in labels):
        return None
    return frozenset(label for label in labels if label)


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
