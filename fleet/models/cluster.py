"""Cluster: where workloads can run, its GPUs and how to reach it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from fleet.ids import ClusterName, Jurisdiction
from fleet.models.base import (
    ClusterScopedBase,
    CountryCode,
    FlavourName,
    LabelKey,
    LabelValue,
    Model,
    NonEmptyStr,
    unique,
)
from fleet.models.podspec import NodeToleration


class Connection(Model):
    """How the controller reaches a cluster. Never inline secrets: a path and a context."""

    kubeconfig: str | None = Field(
        None, description="Path of the kubeconfig file; `${VAR}` is expanded (e.g. "
                          "`${FLEET_KUBECONFIG}`). Unset: the controller's `--kubeconfig`, "
                          "else the standard lookup. Never inline credentials.",
        examples=["${FLEET_KUBECONFIG}"])
    context: str | None = Field(
        None, description="The kubeconfig context to use (default: the cluster's name).",
        examples=["eu-fra-1"])


class GpuOffer(Model):
    """One GPU flavour a cluster offers: which nodes have it, how many, at what price."""

    flavour: FlavourName = Field(
        description="The fleet-wide flavour name Workloads ask for in "
                    "`resources.gpu.flavours`.", examples=["h100-80gb"])
    product: Annotated[LabelValue, Field(min_length=1, max_length=63)] = Field(
        description="The node label `nvidia.com/gpu.product` that selects these nodes; "
                    "pods of this flavour get it as their nodeSelector (so it must be a "
                    "label value, as the API server checks a nodeSelector).",
        examples=["NVIDIA-H100-80GB-HBM3"])
    count: Annotated[int, Field(ge=0)] = Field(
        description="Declared total GPUs of this flavour, a multiple of `perNode`; the "
                    "live capacity read from the cluster overrides it.", examples=[64])
    per_node: Annotated[int, Field(ge=1, le=1024)] = Field(
        description="GPUs per node: each replica must fit on one node.", examples=[8])
    price_per_hour: Annotated[float, Field(ge=0)] | None = Field(
        None, description="Price per GPU-hour, for cost reports, `fleet plan` cost and the "
                          "Price scorer. Unset: the cost is unknown, never zero.",
        examples=[2.9])
    spot: bool = Field(
        False, description="Spot (preemptible) capacity: the nodes may be reclaimed. "
                           "Workloads choose with `placement.spot` (avoid by default).")

    @model_validator(mode="after")
    def _whole_nodes(self) -> GpuOffer:
        if self.count % self.per_node:
            raise ValueError(
                f"count {self.count} is not a multiple of perNode {self.per_node}: "
                "declare whole nodes"
            )
        return self

    @property
    def nodes(self) -> int:
        return self.count // self.per_node


TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class Taint(Model):
    """A cluster-level taint: only workloads that tolerate it are placed there."""

    key: LabelKey = Field(description="The taint's key.", examples=["maintenance"])
    value: str | None = Field(None, description="The taint's value (optional).")
    effect: TaintEffect = Field(
        description="NoSchedule or NoExecute: only tolerating workloads are placed; "
                    "PreferNoSchedule: placed elsewhere when possible.")


GpuAllocation = Literal["device-plugin", "dra"]


class Stack(Model):
    """The in-cluster AI stack the cluster runs: what the renderer may use there.

    Declared, not discovered, so `fleet plan` and `fleet render` need no cluster."""

    kueue: bool = Field(
        False, description="The cluster runs Kueue (`kueue.x-k8s.io`): rendered Jobs and "
                           "JobSets carry `kueue.x-k8s.io/queue-name: <team>` (the team's "
                           "LocalQueue, named after the team namespace) and are created "
                           "suspended, for Kueue to admit.")
    jobset: bool = Field(
        False, description="The cluster serves JobSet (`jobset.x-k8s.io/v1alpha2`): "
                           "multi-node training renders to a JobSet instead of an Indexed "
                           "Job plus headless Service.")
    gpu_allocation: GpuAllocation = Field(
        "device-plugin", description="How pods get GPUs: `device-plugin` (default) "
                                     "requests the extended resource `nvidia.com/gpu`; "
                                     "`dra` renders a ResourceClaimTemplate "
                                     "(`resource.k8s.io/v1`, device class "
                                     "`gpu.nvidia.com`) the pods claim instead.")


_PRODUCT_LABEL = "nvidia.com/gpu.product"  # fleet.render.keys.PRODUCT_LABEL


class SpotNodes(Model):
    """How the cluster's spot nodes are selected and tainted: what the pods of a
    workload placed on a `spot: true` offer get, on top of the `product` nodeSelector.

    The well-known labels: GKE `cloud.google.com/gke-spot: "true"`, EKS managed node
    groups `eks.amazonaws.com/capacityType: SPOT`, Karpenter
    `karpenter.sh/capacity-type: spot`. Spot pools are often tainted too (e.g.
    `cloud.google.com/gke-spot=true:NoSchedule`) so that only tolerating pods land."""

    node_selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        description="Node labels that select the spot nodes, added to the nodeSelector "
                    "of pods placed on a spot offer. Unset: none (only the `product` "
                    "label selects, so on-demand nodes of the same product may be used).",
        examples=[{"cloud.google.com/gke-spot": "true"},
                  {"eks.amazonaws.com/capacityType": "SPOT"},
                  {"karpenter.sh/capacity-type": "spot"}])
    tolerations: tuple[NodeToleration, ...] = Field(
        (), description="Taints of the spot nodes that pods placed on a spot offer "
                        "tolerate. Unset: none.",
        examples=[[{"key": "cloud.google.com/gke-spot", "operator": "Equal",
                    "value": "true", "effect": "NoSchedule"}]])

    @model_validator(mode="after")
    def _product_is_the_offers(self) -> SpotNodes:
        if _PRODUCT_LABEL in self.node_selector:
            raise ValueError(f"nodeSelector {_PRODUCT_LABEL}: each offer's `product` "
                             "sets it")
        return self


class ClusterSpec(Model):
    """Where the cluster is, how to reach it and what GPUs it offers."""

    region: NonEmptyStr = Field(
        description="Free-form region id, shown in reports and used by "
                    "`fleet whatif --down REGION`.", examples=["eu-central-1"])
    jurisdiction: CountryCode = Field(
        description="ISO 3166-1 alpha-2 code of the country where the hardware "
                    "physically is: what residency rules judge.", examples=["DE"])
    provider: str | None = Field(None, description="Free-form provider name.",
                                 examples=["aws"])
    connection: Connection = Field(
        default_factory=Connection,
        description="How the controller reaches the cluster (a kubeconfig path and "
                    "context; never inline secrets).")
    gpus: tuple[GpuOffer, ...] = Field(
        (), description="The GPU flavours the cluster offers, one entry per flavour.")
    taints: tuple[Taint, ...] = Field(
        (), description="Cluster-level taints; a workload must tolerate them to land.")
    cordoned: bool = Field(
        False, description="true: keep what runs, place nothing new (a drain starts "
                           "here).")
    stack: Stack = Field(
        default_factory=Stack,
        description="The AI stack the cluster runs (Kueue, JobSet, DRA): how workloads "
                    "are rendered there. Unset: plain Jobs and `nvidia.com/gpu` limits.")
    spot: SpotNodes = Field(
        default_factory=SpotNodes,
        description="How the spot nodes are selected and tainted: pods placed on an "
                    "offer with `spot: true` get this nodeSelector and these "
                    "tolerations; pods on on-demand offers get neither.")

    @model_validator(mode="after")
    def _unique_flavours(self) -> ClusterSpec:
        unique(tuple(g.flavour for g in self.gpus), "flavour")
        return self


class Cluster(ClusterScopedBase):
    """A Kubernetes cluster workloads can run on: where it is (jurisdiction), how to
    reach it and the GPUs it offers. One per file in `clusters/<cluster>.yaml`."""

    kind: Literal["Cluster"] = Field(description="Always `Cluster`.")
    spec: ClusterSpec = Field(description="The cluster's location, connection and GPUs.")

    @property
    def name(self) -> ClusterName:
        return ClusterName(self.metadata.name)

    @property
    def jurisdiction(self) -> Jurisdiction:
        return Jurisdiction(self.spec.jurisdiction)

    def offer(self, flavour: str) -> GpuOffer | None:
        for g in self.spec.gpus:
            if g.flavour == flavour:
                return g
        return None
