"""The chaos test's fleet: four clusters in three jurisdictions, a ResidencyPolicy, twelve
workloads of four teams and three data classes, as fleet repo files.

The catalogue here is also the oracle's truth: a workload's dataClass and gang-ness
never change during a run (the generator changes replicas, deletes, corrupts and
restores files, moves folders and relabels clusters, never a workload's data class), so
the invariant checks can judge any live object by its label alone.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from fleet.jurisdictions import EU_MEMBERS

CLUSTERS: dict[str, str] = {
    "eu-fra-1": "DE", "eu-par-1": "FR", "us-east-1": "US", "us-west-1": "US"}
"""name -> jurisdiction in the first commit (the Cluster files may relabel it later)."""

JURISDICTIONS = ("DE", "FR", "US")

POLICY = textwrap.dedent("""\
    apiVersion: aifleet.dev/v1alpha1
    kind: ResidencyPolicy
    metadata:
      name: default
    spec:
      dataClasses:
        public: {allowed: ["*"]}
        eu-personal: {allowed: [EU]}
        de-health: {allowed: [DE]}
      default: public
    """)

ALLOWED: dict[str, frozenset[str] | None] = {
    "public": None, "eu-personal": EU_MEMBERS, "de-health": frozenset({"DE"})}
"""The policy above, written out independently: dataClass -> allowed countries (None:
anywhere). The oracle of invariant 2 reads this, never the controller's residency code."""


@dataclass(frozen=True)
class WorkloadDef:
    team: str
    name: str
    wtype: str  # training (a gang Job) or inference (a Deployment)
    data_class: str
    replicas: int
    gpus: int
    spread: tuple[int, int] | None = None

    @property
    def wid(self) -> str:
        return f"{self.team}/{self.name}"

    @property
    def path(self) -> str:
        return f"workloads/{self.team}/{self.name}.yaml"

    @property
    def gang(self) -> bool:
        return self.wtype != "inference"

    def doc(self, replicas: int | None = None) -> str:
        spread = ""
        if self.spread is not None:
            spread = (f"    spread: {{minClusters: {self.spread[0]}, "
                      f"maxClusters: {self.spread[1]}}}\n")
        return (
            "apiVersion: aifleet.dev/v1alpha1\n"
            "kind: Workload\n"
            "metadata:\n"
            f"  name: {self.name}\n"
            f"  namespace: {self.team}\n"
            "spec:\n"
            f"  type: {self.wtype}\n"
            f"  image: registry.internal/{self.name}:v1\n"
            f"  replicas: {self.replicas if replicas is None else replicas}\n"
            "  resources:\n"
            "    gpu:\n"
            f"      count: {self.gpus}\n"
            "      flavours: [h100-80gb]\n"
            "  placement:\n"
            f"    dataClass: {self.data_class}\n"
            f"{spread}"
        )


WORKLOADS: tuple[WorkloadDef, ...] = (
    WorkloadDef("nlp-team", "train-a", "training", "eu-personal", 1, 8),
    WorkloadDef("nlp-team", "train-b", "training", "public", 1, 8),
    WorkloadDef("nlp-team", "chat", "inference", "eu-personal", 2, 1, spread=(1, 2)),
    WorkloadDef("nlp-team", "summarise", "inference", "public", 1, 1),
    WorkloadDef("search-team", "rank", "inference", "public", 1, 1),
    WorkloadDef("search-team", "index", "training", "public", 1, 4),
    WorkloadDef("search-team", "embed", "inference", "eu-personal", 1, 2),
    WorkloadDef("health-team", "triage", "inference", "de-health", 1, 1),
    WorkloadDef("health-team", "train-h", "training", "de-health", 1, 4),
    WorkloadDef("vision-team", "detect", "inference", "public", 2, 1),
    WorkloadDef("vision-team", "ft", "training", "public", 1, 8),
    WorkloadDef("vision-team", "seg", "training", "eu-personal", 1, 4),
)
BY_ID: dict[str, WorkloadDef] = {w.wid: w for w in WORKLOADS}
BY_PATH: dict[str, WorkloadDef] = {w.path: w for w in WORKLOADS}


def cluster_doc(name: str, jurisdiction: str) -> str:
    return (
        "apiVersion: aifleet.dev/v1alpha1\n"
        "kind: Cluster\n"
        f"metadata:\n  name: {name}\n  labels: {{tier: prod}}\n"
        f"spec:\n  region: r-{name}\n  jurisdiction: {jurisdiction}\n  gpus:\n"
        "    - {flavour: h100-80gb, product: NVIDIA-H100-80GB, count: 32, perNode: 8, "
        "pricePerHour: 2.5}\n"
    )


def cluster_path(name: str) -> str:
    return f"clusters/{name}.yaml"


def initial_files() -> dict[str, bytes]:
    files = {cluster_path(n): cluster_doc(n, j).encode() for n, j in CLUSTERS.items()}
    files["policies/residency.yaml"] = POLICY.encode()
    for w in WORKLOADS:
        files[w.path] = w.doc().encode()
    return files


def jurisdiction_in(files: dict[str, bytes], name: str) -> str | None:
    """The jurisdiction a commit's Cluster file gives `name` (None: no such file)."""
    data = files.get(cluster_path(name))
    if data is None:
        return None
    for line in data.decode(errors="replace").splitlines():
        if line.strip().startswith("jurisdiction:"):
            return line.split(":", 1)[1].strip()
    return None
