"""The fleet-wide policies: ResidencyPolicy, TeamQuota, and ours, Guardrails and Owners."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    model_validator,
)

from fleet.ids import Team
from fleet.jurisdictions import ANYWHERE, is_country, is_group_name
from fleet.models.base import (
    ClusterScopedBase,
    DnsLabel,
    FlavourName,
    LabelKey,
    Model,
    unique,
)


def _jurisdiction_ref(value: str) -> str:
    if value == ANYWHERE or is_country(value) or is_group_name(value):
        return value
    if len(value) == 2 and value.isalpha():
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    raise ValueError(
        f"{value!r} is neither '*', an ISO 3166-1 alpha-2 country code nor a group name "
        "(upper-case, e.g. EU, LATAM)"
    )


def _group_name(value: str) -> str:
    if not is_group_name(value):
        raise ValueError(
            f"group name {value!r} must be upper-case letters, digits, '_' or '-' "
            "and must not be a country code"
        )
    return value


JurisdictionRef = Annotated[str, AfterValidator(_jurisdiction_ref)]
GroupName = Annotated[str, AfterValidator(_group_name)]


class DataClassRule(Model):
    allowed: Annotated[tuple[JurisdictionRef, ...], Field(min_length=1)]
    description: str | None = None


class ResidencyPolicySpec(Model):
    groups: dict[GroupName, tuple[JurisdictionRef, ...]] = Field(default_factory=dict)
    data_classes: dict[DnsLabel, DataClassRule] = Field(default_factory=dict)
    default: DnsLabel | None = None

    @model_validator(mode="after")
    def _groups_hold_no_wildcard(self) -> ResidencyPolicySpec:
        for name, members in self.groups.items():
            if ANYWHERE in members:
                raise ValueError(f"group {name} may not contain '*'")
        return self


class ResidencyPolicy(ClusterScopedBase):
    kind: Literal["ResidencyPolicy"]
    spec: ResidencyPolicySpec


# --------------------------------------------------------------------------- TeamQuota


class FlavourQuota(Model):
    flavour: FlavourName
    nominal: Annotated[int, Field(ge=0)]
    borrowing_limit: Annotated[int, Field(ge=0)] | None = None
    """GPUs the team may borrow from its cohort beyond nominal; unset: no limit (Kueue)."""


class TeamQuotaSpec(Model):
    cohort: DnsLabel | None = None
    gpus: tuple[FlavourQuota, ...] = ()

    @model_validator(mode="after")
    def _unique_flavours(self) -> TeamQuotaSpec:
        unique(tuple(g.flavour for g in self.gpus), "flavour")
        return self


class TeamQuota(ClusterScopedBase):
    kind: Literal["TeamQuota"]
    spec: TeamQuotaSpec

    @property
    def team(self) -> Team:
        return Team(self.metadata.name)



# Extensions (docs/fleet-repo-extensions.md); what they mean is in fleet.guardrails and
# fleet.owners, which merge and check them.


RegistryPrefix = Annotated[str, Field(min_length=1, max_length=255)]


class GuardrailRules(Model):
    """Limits on Workloads; every rule is optional, unset means no limit."""

    max_gpus_per_workload: Annotated[int, Field(ge=0)] | None = None
    max_replicas: Annotated[int, Field(ge=1)] | None = None
    allowed_flavours: tuple[FlavourName, ...] | None = None
    required_labels: tuple[LabelKey, ...] | None = None
    allowed_registries: tuple[RegistryPrefix, ...] | None = None


class GuardrailsSpec(Model):
    defaults: GuardrailRules = Field(default_factory=GuardrailRules)
    """Fleet-wide rules; a team's entry replaces the rules it sets, rule by rule."""
    teams: dict[DnsLabel, GuardrailRules] = Field(default_factory=dict)


class Guardrails(ClusterScopedBase):
    kind: Literal["Guardrails"]
    spec: GuardrailsSpec


class OwnerRule(Model):
    path: Annotated[str, Field(min_length=1, max_length=1024)]
    """A CODEOWNERS-style glob relative to the fleet root: `*`, `**`, `?`."""
    owners: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1)]


class OwnersSpec(Model):
    rules: tuple[OwnerRule, ...] = ()


class Owners(ClusterScopedBase):
    kind: Literal["Owners"]
    spec: OwnersSpec
