"""Workload: a team's GPU workload intent."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
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
from fleet.safety import wildcard_tolerates

WorkloadType = Literal["training", "inference", "batch"]
UNREACHABLE_TOLERATION_KEY = "aifleet.dev/unreachable"


def _image(value: str) -> str:
    problem = image_reference_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


ImageRef = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_image)]
DEFAULT_UNREACHABLE_GRACE_SECONDS = 300


class GpuRequest(Model):
    count: Annotated[int, Field(ge=1, le=1024)]
    flavours: Annotated[tuple[FlavourName, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_flavours(self) -> GpuRequest:
        unique(self.flavours, "flavour")
        return self


class Resources(Model):
    gpu: GpuRequest
    cpu: Quantity | None = None
    memory: Quantity | None = None


class LabelSelectorRequirement(Model):
    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(Model):
    match_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

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
    min_clusters: Annotated[int, Field(ge=1)] = 1
    max_clusters: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _ordered(self) -> Spread:
        if self.min_clusters > self.max_clusters:
            raise ValueError(
                f"minClusters {self.min_clusters} is more than maxClusters {self.max_clusters}"
            )
        return self


class Toleration(Model):
    key: LabelKey | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: TaintEffect | None = None
    toleration_seconds: Annotated[int, Field(ge=0)] | None = None

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
    data_class: DnsLabel | None = None
    cluster_selector: LabelSelector | None = None
    clusters: tuple[DnsLabel, ...] = ()
    gang: bool | None = None
    spread: Spread | None = None
    tolerations: tuple[Toleration, ...] = ()


class InferenceSpec(Model):
    port: Annotated[int, Field(ge=1, le=65535)] = 8000


class WorkloadSpec(Model):
    type: WorkloadType
    image: ImageRef
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: dict[EnvName, str] = Field(default_factory=dict)
    replicas: Annotated[int, Field(ge=1, le=10_000)] = 1
    resources: Resources
    placement: Placement = Field(default_factory=Placement)
    priority: Annotated[int, Field(ge=-1_000_000, le=1_000_000)] = 0
    inference: InferenceSpec | None = None
    recreate: Literal["never", "onChange"] = Field(
        "never", description=(
            "training and batch: what to do when a change cannot be made to the running "
            "Job in place (its pod template, or a NonIndexed Job's completions): `never` "
            "(default) keeps the running Job and reports that a re-create is needed; "
            "`onChange` deletes and re-creates it, losing the work in progress"))

    @model_validator(mode="after")
    def _consistent(self) -> WorkloadSpec:
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
    def inference_port(self) -> int:
        return (self.inference or InferenceSpec()).port


class Workload(DocumentBase):
    kind: Literal["Workload"]
    spec: WorkloadSpec

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
