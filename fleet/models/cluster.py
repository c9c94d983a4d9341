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
    Model,
    NonEmptyStr,
    unique,
)


class Connection(Model):
    """How the controller reaches a cluster. Never inline secrets: a path and a context."""

    kubeconfig: str | None = None
    context: str | None = None


class GpuOffer(Model):
    flavour: FlavourName
    product: Annotated[str, Field(min_length=1, max_length=63)]
    count: Annotated[int, Field(ge=0)]
    per_node: Annotated[int, Field(ge=1, le=1024)]
    price_per_hour: Annotated[float, Field(ge=0)] | None = None
    spot: bool = False

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
    key: LabelKey
    value: str | None = None
    effect: TaintEffect


class ClusterSpec(Model):
    region: NonEmptyStr
    jurisdiction: CountryCode
    provider: str | None = None
    connection: Connection = Field(default_factory=Connection)
    gpus: tuple[GpuOffer, ...] = ()
    taints: tuple[Taint, ...] = ()
    cordoned: bool = False

    @model_validator(mode="after")
    def _unique_flavours(self) -> ClusterSpec:
        unique(tuple(g.flavour for g in self.gpus), "flavour")
        return self


class Cluster(ClusterScopedBase):
    kind: Literal["Cluster"]
    spec: ClusterSpec

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
