"""The names the controller writes on every object: label and annotation keys, the
workload label and its inverse, the kind order. Defined here once; everything that
writes, selects or reads an owned object imports them.

The inventory label `aifleet.dev/workload` holds `<team>.<name>`: a workload id
(`<team>/<name>`) with its one slash made a dot, because a label value may not hold a
slash. Both halves are DNS-1123 labels, which hold no dot, so the first dot of a label
splits it back. A label value is at most 63 characters
(`k8s.io/apimachinery/pkg/util/validation/validation.go`, `IsValidLabelValue`):
`fleet.safety.workload_label_problem` refuses a workload whose label would be longer,
so every label written passes.
"""

from __future__ import annotations

from fleet.ids import WorkloadId

DOMAIN = "aifleet.dev"
MANAGED_BY = "aifleet.dev/managed-by"
"""Label on every object the controller owns (value `aifleet`): its inventory."""
MANAGED_BY_VALUE = "aifleet"
OWNED_SELECTOR = f"{MANAGED_BY}={MANAGED_BY_VALUE}"
WORKLOAD_LABEL = "aifleet.dev/workload"
"""Label: the workload an object belongs to, `<team>.<name>` (`workload_label`)."""
SOURCE_COMMIT = "aifleet.dev/source-commit"
"""Annotation: the commit at which the workload's intent last changed."""
FLAVOUR = "aifleet.dev/flavour"
"""Annotation: the GPU flavour of this placement."""
INTENT_HASH = "aifleet.dev/intent-hash"
"""Annotation: sha256 of the Workload's canonical spec (`intent_hash`)."""
RECREATE = "aifleet.dev/recreate"
"""On a Job: `never` or `onChange`, the workload's `spec.recreate` (what the applier may
do when the API server refuses a change to the running Job in place)."""
CONTENT_HASH = "aifleet.dev/content-hash"
"""Annotation the applier stamps: the hash of what it applied (no-op re-apply = 0 calls)."""
LEASE_GENERATION = "aifleet.dev/lease-generation"
"""Annotation the applier stamps: the leader generation that wrote the object last."""

GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
"""Node label (set by GPU feature discovery) the pods select their GPU product by."""

GPUS_PER_REPLICA = "aifleet.dev/gpus-per-replica"
"""Annotation on a workload object whose pods claim GPUs through DRA: GPUs per pod (the
count lives in its ResourceClaimTemplate, which `read_back` does not see)."""

QUEUE_NAME = "kueue.x-k8s.io/queue-name"
"""Label Kueue admits a Job/JobSet by: its LocalQueue. aifleet writes the team's name
(the team namespace's LocalQueue is named after the team: `team_queue`)."""


def team_queue(team: str) -> tuple[str, str]:
    """(namespace, name) of the LocalQueue a team's Jobs and JobSets are queued in on a
    Kueue cluster: the team's namespace, named after the team. The renderer labels the
    Jobs with it and applies it (`fleet.render.kueue.local_queue`); placement bounds
    the team by the ClusterQueue it points to (`fleet.placement.queues`)."""
    return team, team
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
"""Annotation the Job controller sets on an Indexed Job's pods (pkg/controller/job,
`addCompletionIndexEnvVariable` / `addCompletionIndexAnnotation`): NODE_RANK reads it."""
RENDEZVOUS_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK")
"""The env a multi-node (torchrun) training pod finds its peers by: set by aifleet."""
MASTER_PORT = 29500
"""torch.distributed's default rendezvous port."""

CREATE_ONLY: dict[str, tuple[tuple[str, ...], ...]] = {
    "Job": (("spec", "suspend"),), "JobSet": (("spec", "suspend"),)}
"""Fields aifleet writes when it creates an object and never again: on a Kueue cluster a
Job/JobSet is created `suspend: true` and Kueue unsuspends it on admission (as a
MultiKueue worker sees it); re-applying `true`, or calling Kueue's `false` drift, would
stop an admitted job. `fleet.render.forward.for_existing` drops them."""

DRA_DEVICE_CLASS = "gpu.nvidia.com"
"""The NVIDIA DRA driver's DeviceClass for whole GPUs (and its attribute domain)."""
DRA_MIG_CLASS = "mig.nvidia.com"
"""The NVIDIA DRA driver's DeviceClass for MIG slices."""
DRA_REQUEST = "gpu"
"""The name of the GPU request in a ResourceClaimTemplate and of the pod's claim."""

KIND_ORDER = {"Namespace": 0, "ResourceClaimTemplate": 1, "Service": 2, "Deployment": 3,
              "Job": 4, "JobSet": 5}
"""Apply order: Namespaces first; within a workload, what its pods refer to (claim
templates, the Service) before what makes pods."""
WORKLOAD_KINDS = ("Job", "Deployment", "JobSet")
"""The kinds that run a workload's pods (what replicas, GPUs and product are read from)."""


def workload_label(wid: str) -> str:
    """`team/name` (workload id) -> `team.name` (the `aifleet.dev/workload` label)."""
    return wid.replace("/", ".", 1)


def workload_id_of_label(label: str) -> WorkloadId:
    """`team.name` -> `team/name`: a team is a DNS label (no dot), so the first dot
    splits. A value that is not a workload label (no dot, or already an id) is returned
    as it is."""
    if "/" in label:
        return WorkloadId(label)
    return WorkloadId(label.replace(".", "/", 1))
