"""The in-cluster AI stack a simulated cluster may run: Kueue and JobSet.

`install` creates their CustomResourceDefinitions through the ordinary CRD path (the
store's create, validated and established by `crds.CustomResources`), as `kubectl
apply -f manifests.yaml` of a release would; `controllers` starts their simulated
controllers (`kueue.Kueue`, `jobset.JobSets`) on that cluster only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clusters.sim.crds import CRDS
from clusters.sim.stacks.jobset import JobSets
from clusters.sim.stacks.kueue import Kueue
from clusters.sim.stacks.schemas import jobset_crds, kueue_crds
from clusters.sim.store import Store

if TYPE_CHECKING:
    from clusters.sim.crds import CustomResources

KUEUE = "kueue"
JOBSET = "jobset"
STACKS = (KUEUE, JOBSET)


def install(store: Store, stack: frozenset[str]) -> None:
    """Create the CRDs of every component in `stack` (unknown names are refused)."""
    unknown = sorted(set(stack) - set(STACKS))
    if unknown:
        raise ValueError(f"unknown stack component(s) {unknown}; known: {list(STACKS)}")
    crds = (kueue_crds() if KUEUE in stack else []) + \
        (jobset_crds() if JOBSET in stack else [])
    for crd in crds:
        if store.find(CRDS, "", crd["metadata"]["name"]) is None:
            store.create(CRDS, crd)


def controllers(store: Store, crds: CustomResources, stack: frozenset[str]
                ) -> tuple[Kueue | None, JobSets | None]:
    """The simulated controllers of `stack` on one cluster, listening to its store."""
    return (Kueue(store, crds) if KUEUE in stack else None,
            JobSets(store, crds) if JOBSET in stack else None)
