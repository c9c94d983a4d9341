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

from fleet.ids import WorkloadId, workload_id

# --------------------------------------------------------------------------- deletions


# ------------------------------------------------------------------ returning clusters


# ---------------------------------------------------------------- tenancy and identity
#
# A tenant is a team folder, `workloads/<team>/`: what it writes lands in namespace
# <team> of every cluster the plan picks, so the folder decides the namespace and the
# id, never a field of the file (a file cannot speak for another team's workload), and
# the names the controller itself lives by (system namespaces, the `aifleet.dev` label
# and annotation prefix) are out of every tenant's reach.

SYSTEM_NAMESPACES = frozenset({"default", "aifleet-system"})
"""Namespaces no tenant may use, besides those starting with `SYSTEM_PREFIXES`."""
SYSTEM_PREFIXES = ("kube-", "aifleet-", "openshift-")
"""Kubernetes' own (`kube-system`, `kube-public`, `kube-node-lease`), the controller's
(`aifleet-system` holds the Lease and the shared plan) and a distribution's."""
RESERVED_DOMAIN = "aifleet.dev"
"""Label and annotation keys under this prefix (or a subdomain of it) are the
controller's: its inventory (`aifleet.dev/managed-by`, `aifleet.dev/workload`), the
fencing generation, the source commit. A tenant who could set them could adopt,
orphan or fence objects it does not own."""
WORKLOAD_SUFFIXES = (".yaml", ".yml")


def tenant_namespace_problem(team: str) -> str | None:
    """Why `workloads/<team>/` may not hold workloads, or None when it may.

    Invariant: the controller never writes into (or labels as managed) a namespace it
    does not own: kube-*, default, aifleet-*, openshift-*."""
    if team in SYSTEM_NAMESPACES or team.startswith(SYSTEM_PREFIXES):
        return (f"namespace {team} is reserved to the cluster or the controller "
                f"(kube-*, default, aifleet-*, openshift-*): a team folder may not use it")
    return None


def reserved_key_problem(key: str) -> str | None:
    """Why a tenant may not set the label or annotation `key`, or None when it may.

    Invariant: no Workload file sets a key with the controller's prefix (`aifleet.dev/`
    or `<sub>.aifleet.dev/`), so every such key on a cluster was written by the
    controller."""
    prefix, sep, _ = key.rpartition("/")
    prefix = prefix.lower()
    if sep and (prefix == RESERVED_DOMAIN or prefix.endswith(f".{RESERVED_DOMAIN}")):
        return (f"{key}: the {RESERVED_DOMAIN}/ prefix is reserved to the controller; "
                "a workload may not set it")
    return None


MAX_LABEL_VALUE = 63


def workload_label_problem(team: str, name: str) -> str | None:
    """Why `<team>/<name>` cannot be a workload on a cluster, or None when it can.

    Invariant: every workload the controller plans can carry its inventory label
    (`aifleet.dev/workload: <team>.<name>`, a label value of at most 63 characters),
    so no object of it is refused by the API server for its label."""
    if len(team) + 1 + len(name) > MAX_LABEL_VALUE:
        return (f"team and name together are too long: the label {team}.{name} that marks "
                f"the workload's objects is {len(team) + 1 + len(name)} characters, over "
                f"Kubernetes' {MAX_LABEL_VALUE}; shorten metadata.name")
    return None


def path_workload_id(path: str, name: str | None) -> WorkloadId | None:
    """The id a Workload file speaks for: its team folder, and `name` (the document's
    `metadata.name` when it can be read) or else the file's name without `.yaml`.
    None when the path is not `workloads/<team>/...`.

    Invariant: a file's errors make Invalid (protected from prune) only an id in its
    own team folder, never another team's workload, whatever namespace it declares."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "workloads" or not parts[1]:
        return None
    if name is None:
        stem = parts[-1]
        for suffix in WORKLOAD_SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        name = stem
    return workload_id(parts[1], name) if name else None


def kept_from_previous(previous: Mapping[str, Iterable[WorkloadId]],
                       unreadable: Iterable[str],
                       declared: Iterable[WorkloadId]) -> dict[WorkloadId, str]:
    """Workloads a file this commit cannot read held before: id -> file.

    `previous`: file -> the workload ids its last readable version declared (the Git
    history, `workloads.history`);
    `unreadable`: files of this commit that hold no valid Workload and have errors;
    `declared`: every id this commit names (valid or invalid) anywhere.

    Invariant: a Workload file that stops parsing (or is refused) keeps the workload it
    held Invalid, so its running objects are not pruned, even when its name cannot be
    read any more; a workload that moved to a file that reads is not held back."""
    named = set(declared)
    out: dict[WorkloadId, str] = {}
    for file in sorted(set(unreadable)):
        for wid in sorted(previous.get(file, ())):
            if wid not in named:
                out.setdefault(wid, file)
    return out
