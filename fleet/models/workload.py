"""Workload: a team's GPU workload intent."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from fleet.ids import Flavour, Team, WorkloadId, workload_id
from fleet.imageref import image_reference_problem
from fleet.models.base import (
    DnsLabel,
    DocumentBase,
    EnvName,
    FlavourName,
    LabelKey,
    LabelValue,
    Model,
    Quantity,
    unique,
)
from fleet.models.cluster import Taint, TaintEffect
from fleet.models.podspec import (
    NO_POD_OPTIONS,
    EnvFromSource,
    EnvValueFrom,
    PodOptions,
    Probe,
    Volume,
    check_volumes,
)
from fleet.safety import wildcard_tolerates

WorkloadType = Literal["training", "inference", "batch"]
SpotRule = Literal["prefer", "avoid", "require"]
DEFAULT_SPOT: SpotRule = "avoid"
"""`placement.spot` when unset: a preempted gang loses its work."""
UNREACHABLE_TOLERATION_KEY = "aifleet.dev/unreachable"


def _image(value: str) -> str:
    problem = image_reference_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


ImageRef = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_image)]


def _env_kind(value: object) -> str | None:
    if isinstance(value, str):
        return "value"
    if isinstance(value, dict | EnvValueFrom):
        return "ref"
    return None


EnvValue = Annotated[
    Annotated[str, Tag("value")] | Annotated[EnvValueFrom, Tag("ref")],
    Discriminator(_env_kind, custom_error_type="env_value",
                  custom_error_message="an env value is a string (quote numbers and "
                                       "booleans: '3') or a reference {secretKeyRef: "
                                       "{name, key}} / {configMapKeyRef: {name, key}}")]
"""A literal or a reference; one error that says which shapes are allowed, not one per
branch of the union."""
DEFAULT_UNREACHABLE_GRACE_SECONDS = 300


class GpuRequest(Model):
    """GPUs per replica, and which flavours are acceptable."""

    count: Annotated[int, Field(ge=1, le=1024)] = Field(
        description="GPUs per replica; a replica runs on one node, so it must be at most "
                    "the flavour's `perNode`.", examples=[8])
    flavours: Annotated[tuple[FlavourName, ...], Field(min_length=1)] = Field(
        description="Acceptable flavours in order of preference; every replica uses one "
                    "of them.", examples=[["h100-80gb", "a100-80gb"]])

    @model_validator(mode="after")
    def _unique_flavours(self) -> GpuRequest:
        unique(self.flavours, "flavour")
        return self


class Resources(Model):
    """What each replica needs."""

    gpu: GpuRequest = Field(description="GPUs per replica and the acceptable flavours.")
    cpu: Quantity | None = Field(
        None, description="CPU per replica, a Kubernetes quantity (quote numbers).",
        examples=["32", "500m"])
    memory: Quantity | None = Field(
        None, description="Memory per replica, a Kubernetes quantity.",
        examples=["512Gi"])


class LabelSelectorRequirement(Model):
    """One expression of a label selector, as in Kubernetes."""

    key: LabelKey = Field(description="The cluster label key.", examples=["tier"])
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In / NotIn: the label's value is (not) one of `values`; Exists / "
                    "DoesNotExist: the label is (not) set.")
    values: tuple[str, ...] = Field(
        (), description="The values for In and NotIn (at least one); none for Exists "
                        "and DoesNotExist.")

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(Model):
    """Kubernetes label-selector syntax over the Clusters' labels; all terms must hold."""

    match_labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="Labels the cluster must have, with these "
                                          "values.", examples=[{"tier": "prod"}])
    match_expressions: tuple[LabelSelectorRequirement, ...] = Field(
        (), description="Expressions that must all hold.")

    def matches(self, labels: dict[str, str]) -> bool:
        for k, v in self.match_labels.items():
            if labels.get(k) != v:
                return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and (not present or labels[req.key] not in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True


class Spread(Model):
    """How many clusters a non-gang workload's replicas may be divided over."""

    min_clusters: Annotated[int, Field(ge=1)] = Field(
        1, description="At least this many clusters (at most `replicas`).")
    max_clusters: Annotated[int, Field(ge=1)] = Field(
        1, description="At most this many clusters.")

    @model_validator(mode="after")
    def _ordered(self) -> Spread:
        if self.min_clusters > self.max_clusters:
            raise ValueError(
                f"minClusters {self.min_clusters} is more than maxClusters {self.max_clusters}"
            )
        return self


class Toleration(Model):
    """Lets the workload land on clusters with a matching taint (Kubernetes semantics);
    with the key `aifleet.dev/unreachable`, how long it waits on an unreachable cluster
    before failing over."""

    key: LabelKey | None = Field(
        None, description="The taint key; unset with operator Exists: every taint "
                          "(except the fleet's own `aifleet.dev/...` ones).",
        examples=["maintenance", "aifleet.dev/unreachable"])
    operator: Literal["Equal", "Exists"] = Field(
        "Equal", description="Equal: key and value match; Exists: the key matches.")
    value: str | None = Field(None, description="The taint value, for operator Equal.")
    effect: TaintEffect | None = Field(
        None, description="Only taints of this effect (unset: any effect).")
    toleration_seconds: Annotated[int, Field(ge=0)] | None = Field(
        None, description="With key `aifleet.dev/unreachable`: seconds the workload "
                          "stays on an unreachable cluster before failover (default 300).",
        examples=[600])

    @model_validator(mode="after")
    def _shape(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("operator Exists takes no value")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without a key must use operator Exists")
        return self

    def tolerates(self, taint: Taint) -> bool:
        """Kubernetes semantics (an empty key with Exists matches every taint), except
        for the fleet's own taints (`fleet.safety.reserved_taint`): only a toleration
        naming such a key passes it."""
        if self.effect is not None and self.effect != taint.effect:
            return False
        if self.key is None:
            return wildcard_tolerates(taint.key)
        if self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        return (self.value or "") == (taint.value or "")


class Placement(Model):
    """Where the workload may run: residency first, then narrowing and shape."""

    data_class: DnsLabel | None = Field(
        None, description="The data class of what the workload processes: a "
                          "ResidencyPolicy `dataClasses` entry, which says the "
                          "jurisdictions it may run in. Never violated. Unset: the "
                          "policy's `default`.", examples=["eu-personal"])
    cluster_selector: LabelSelector | None = Field(
        None, description="Only clusters whose labels match (narrows, never widens "
                          "residency).")
    clusters: tuple[DnsLabel, ...] = Field(
        (), description="Only these clusters, by name (an extension; empty: any).",
        examples=[["eu-fra-1", "eu-par-1"]])
    gang: bool | None = Field(
        None, description="true: all replicas in one cluster, all or nothing. Default: "
                          "true for training and batch, false for inference.")
    spread: Spread | None = Field(
        None, description="Non-gang workloads: divide the replicas over this many "
                          "clusters.")
    tolerations: tuple[Toleration, ...] = Field(
        (), description="Taints the workload tolerates, and its unreachable grace.")
    spot: SpotRule | None = Field(
        None, description="Spot (preemptible) capacity, the Cluster's `gpus[].spot`: "
                          "`avoid` (the default) prefers on-demand offers, `prefer` "
                          "prefers spot offers (cheaper; for work that survives a "
                          "preemption, such as batch Jobs), `require` runs only on spot "
                          "offers. A preference never outweighs the flavour order.",
        examples=["prefer"])


class InferenceSpec(Model):
    """Inference only: how the Service reaches the pods."""

    port: Annotated[int, Field(ge=1, le=65535)] = Field(
        8000, description="The container port the Service targets.")
    readiness_probe: Probe | None = Field(
        None, description="When a pod takes traffic (the Service sends none before): "
                          "`httpGet`/`tcpSocket` default to the inference port.")
    liveness_probe: Probe | None = Field(
        None, description="When the kubelet restarts a hung server; give model loading "
                          "time with `initialDelaySeconds`.")


class WorkloadSpec(Model):
    """What to run, how much of it, and where it may run."""

    type: WorkloadType = Field(
        description="training and batch render to a batch/v1 Job, inference to an "
                    "apps/v1 Deployment and a Service.")
    image: ImageRef = Field(
        description="The container image, a full reference (a tag or a digest).",
        examples=["registry.internal/llm-trainer:v2.1"])
    command: tuple[str, ...] | None = Field(
        None, description="The container's command (its entrypoint).",
        examples=[["torchrun", "train.py"]])
    args: tuple[str, ...] | None = Field(
        None, description="Arguments to the command (an extension).")
    env: dict[EnvName, EnvValue] = Field(
        default_factory=dict, description=(
            "Environment variables: a string (quote numbers), or a reference "
            "`{secretKeyRef: {name, key}}` / `{configMapKeyRef: {name, key}}` whose value "
            "stays in the cluster. `fleet validate` refuses a literal value that looks "
            "like a credential (a name such as *TOKEN*, *PASSWORD*, *SECRET*, *KEY*, or a "
            "value shaped like a known token): use a secretKeyRef. Training pods also get "
            "MASTER_ADDR, MASTER_PORT, WORLD_SIZE and NODE_RANK (reserved)."),
        examples=[{"EPOCHS": "3", "HF_TOKEN": {"secretKeyRef": {"name": "hf", "key": "token"}}}])
    env_from: tuple[EnvFromSource, ...] = Field(
        (), description="Every key of a Secret (`secretRef`) or ConfigMap "
                        "(`configMapRef`) as environment variables.")
    volumes: tuple[Volume, ...] = Field(
        (), description="Volumes mounted into the container: a PersistentVolumeClaim "
                        "(datasets, weights, checkpoints), ConfigMap, Secret or emptyDir.")
    shm: Quantity | None = Field(
        None, description="Shared memory for NCCL and data loaders: a memory-backed "
                          "emptyDir of this size at /dev/shm (the default 64Mi is too "
                          "small for PyTorch).", examples=["16Gi"])
    pod: PodOptions = Field(
        default_factory=lambda: NO_POD_OPTIONS,
        description="Pod-level settings: serviceAccountName, imagePullSecrets, "
                    "priorityClassName, node tolerations and affinity, and a pod template "
                    "overlay.")
    replicas: Annotated[int, Field(ge=1, le=10_000)] = Field(
        1, description="Pods; each gets `resources` on one node.")
    resources: Resources = Field(description="GPUs (required), CPU and memory per replica.")
    placement: Placement = Field(
        default_factory=Placement, description="Residency, narrowing and shape of the "
                                               "placement.")
    priority: Annotated[int, Field(ge=-1_000_000, le=1_000_000)] = Field(
        0, description="Higher places first, and may preempt lower.")
    inference: InferenceSpec | None = Field(
        None, description="Only for type inference: the Service port.")
    recreate: Literal["never", "onChange"] = Field(
        "never", description=(
            "training and batch: what to do when a change cannot be made to the running "
            "Job in place (its pod template, or a NonIndexed Job's completions): `never` "
            "(default) keeps the running Job and reports that a re-create is needed; "
            "`onChange` deletes and re-creates it, losing the work in progress."))

    @model_validator(mode="after")
    def _consistent(self) -> WorkloadSpec:
        check_volumes(self.volumes, self.shm)
        if self.inference is not None and self.type != "inference":
            raise ValueError(f"`inference` is only for type inference, not {self.type}")
        if self.placement.spread is not None and self.gang:
            raise ValueError(
                "placement.spread divides replicas over clusters, which a gang cannot do: "
                "set placement.gang: false"
            )
        spread = self.placement.spread
        if spread is not None and spread.min_clusters > self.replicas:
            raise ValueError(
                f"placement.spread.minClusters {spread.min_clusters} is more than "
                f"replicas {self.replicas}"
            )
        return self

    @property
    def gang(self) -> bool:
        if self.placement.gang is not None:
            return self.placement.gang
        return self.type != "inference"

    @property
    def effective_spread(self) -> Spread:
        """How many clusters the replicas may be divided over; a gang is always 1..1."""
        if self.gang or self.placement.spread is None:
            return Spread(min_clusters=1, max_clusters=1)
        return self.placement.spread

    @property
    def unreachable_grace_seconds(self) -> int:
        for t in self.placement.tolerations:
            if t.key == UNREACHABLE_TOLERATION_KEY and t.toleration_seconds is not None:
                return t.toleration_seconds
        return DEFAULT_UNREACHABLE_GRACE_SECONDS

    @property
    def effective_spot(self) -> SpotRule:
        """`placement.spot`, or `DEFAULT_SPOT` when unset."""
        return self.placement.spot or DEFAULT_SPOT

    @property
    def inference_port(self) -> int:
        return (self.inference or InferenceSpec()).port


class Workload(DocumentBase):
    """A team's GPU workload: what to run and the rules for where. One per file in
    `workloads/<team>/<name>.yaml`; its id is `<team>/<name>`."""

    kind: Literal["Workload"] = Field(description="Always `Workload`.")
    spec: WorkloadSpec = Field(description="What to run and where it may run.")

    @model_validator(mode="after")
    def _namespaced(self) -> Workload:
        if self.metadata.namespace is None:
            raise ValueError("a Workload needs metadata.namespace (its team)")
        return self

    @property
    def id(self) -> WorkloadId:
        return workload_id(self.team, self.metadata.name)

    @property
    def team(self) -> Team:
        assert self.metadata.namespace is not None  # checked by the validator
        return Team(self.metadata.namespace)

    @property
    def flavours(self) -> tuple[Flavour, ...]:
        return tuple(Flavour(f) for f in self.spec.resources.gpu.flavours)
