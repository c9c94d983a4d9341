"""Suspension: an operator's "hands off" for one workload, or for every workload on a
cluster, as `flux suspend` and Argo CD's disabled auto-sync give.

While a workload is suspended (itself, or through its cluster) the controller leaves
what runs of it as it is: no apply (a new commit of it waits), no prune and no stale-copy
delete (a plan that moves it elsewhere starts nothing there either), no drift correction
(drift is still detected and shown). Placement still plans it, so `fleet status` and
`fleet plan` say where it would go. Resuming reconciles the affected clusters at once.

The set is kept in the state directory (`suspended.json`, `controllers.persist.statefile`:
atomic, owner-only, versioned), so a restart does not resume anything by itself, and
with a home cluster also there (`controllers.runtime.handover`), so neither does a
leader handover; each
change is recorded in the ledger as `Suspended` / `Resumed` and shown in the status
document (`suspended` on the workload or cluster row and a `Suspended` condition).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controllers.persist import statefile

FILE = "suspended.json"
CONDITION = "Suspended"


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(slots=True)
class Suspensions:
    """Suspended workload ids and cluster names, each with the time it was suspended."""

    state_dir: Path
    clock: Callable[[], str] = _utc_now
    workloads: dict[str, str] = field(default_factory=dict)
    clusters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, state_dir: Path, clock: Callable[[], str] = _utc_now) -> Suspensions:
        out = cls(state_dir, clock)
        doc = statefile.read(state_dir / FILE, 1)
        if doc is not None and not out._take(doc):
            # Damaged: never treat that as "nothing is suspended" silently; it is said
            # (state_file_unusable) and the operator suspends again.
            statefile.unusable(state_dir / FILE, TypeError("not a suspensions document"))
        return out

    def _take(self, doc: dict[str, Any]) -> bool:
        """Replace the sets with a document's (`to_doc`'s); False (nothing changed)
        when it is not one."""
        taken: tuple[dict[str, str], dict[str, str]] = ({}, {})
        try:
            for key, into in zip(("workloads", "clusters"), taken, strict=True):
                for name, since in dict(doc.get(key) or {}).items():
                    if not isinstance(name, str) or not isinstance(since, str):
                        raise TypeError(f"{key}: {name!r} -> {since!r} is not text")
                    into[name] = since
        except (TypeError, ValueError):
            return False
        self.workloads, self.clusters = taken
        return True

    def to_doc(self) -> dict[str, Any]:
        """The state file's body (also the home cluster's copy: `handover`)."""
        return {"workloads": dict(sorted(self.workloads.items())),
                "clusters": dict(sorted(self.clusters.items()))}

    def replace(self, doc: dict[str, Any]) -> bool:
        """The home cluster's copy wins (`controllers.runtime.handover`): taken, and
        saved as the local cache; False when it is not a suspensions document."""
        before = self.to_doc()
        if doc.get("version") != 1 or not self._take(doc):
            return False
        if self.to_doc() != before:
            self.save()
        return True

    def save(self) -> None:
        statefile.write(self.state_dir / FILE, 1, self.to_doc())

    def change(self, *, suspend: bool, workload: str | None = None,
            cluster: str | None = None) -> bool:
        """Suspend (or resume) one workload or one cluster; whether anything changed.
        Saved before it returns: a crash right after an answer keeps the answer."""
        into = self.workloads if workload is not None else self.clusters
        key = workload if workload is not None else cluster
        assert key is not None
        if suspend == (key in into):
            return False
        if suspend:
            into[key] = self.clock()
        else:
            del into[key]
        self.save()
        return True

    def holds(self, cluster: str, workload: str) -> bool:
        """Is this workload on this cluster to be left alone?"""
        return workload in self.workloads or cluster in self.clusters

    def annotate(self, doc: dict[str, Any]) -> None:
        """Mark suspended rows of a status document, and add the `Suspended` condition
        naming them (so `fleet status` and the page say it without knowing this file)."""
        for row in doc.get("workloads", []):
            since = self.workloads.get(str(row.get("id")))
            if since is not None:
                row["suspended"] = {"since": since}
        for row in doc.get("clusters", []):
            since = self.clusters.get(str(row.get("name")))
            if since is not None:
                row["suspended"] = {"since": since}
        if not (self.workloads or self.clusters):
            return
        parts = []
        if self.workloads:
            parts.append("workloads " + ", ".join(sorted(self.workloads)))
        if self.clusters:
            parts.append("every workload on clusters " + ", ".join(sorted(self.clusters)))
        doc.setdefault("source", {}).setdefault("conditions", []).append({
            "type": CONDITION, "status": "True", "reason": "SuspendedByOperator",
            "message": "not reconciled (no apply, prune or drift correction) until "
                       "`fleet resume`: " + "; ".join(parts)})
