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
    """Where data of one class may be processed."""

    allowed: Annotated[tuple[JurisdictionRef, ...], Field(min_length=1)] = Field(
        description="Country codes, group names (`EU`, `EEA`, or one of `groups`) or "
                    "`*` for anywhere.", examples=[["EU"], ["BR"], ["*"]])
    description: str | None = Field(None, description="What data this class is, for "
                                                      "people.")


class ResidencyPolicySpec(Model):
    """Named groups of countries, and per data class the jurisdictions it may run in."""

    groups: dict[GroupName, tuple[JurisdictionRef, ...]] = Field(
        default_factory=dict,
        description="Named groups of country codes (upper-case names; `EU` and `EEA` "
                    "are built in).", examples=[{"LATAM": ["AR", "BR", "CL"]}])
    data_classes: dict[DnsLabel, DataClassRule] = Field(
        default_factory=dict, description="Per data class, where it may run. A Workload "
                                          "naming a class not defined here is invalid.")
    default: DnsLabel | None = Field(
        None, description="The data class of Workloads that name none.",
        examples=["public"])

    @model_validator(mode="after")
    def _groups_hold_no_wildcard(self) -> ResidencyPolicySpec:
        for name, members in self.groups.items():
            if ANYWHERE in members:
                raise ValueError(f"group {name} may not contain '*'")
        return self


class ResidencyPolicy(ClusterScopedBase):
    """Maps a Workload's `dataClass` to the jurisdictions where it may run. In
    `policies/*.yaml`."""

    kind: Literal["ResidencyPolicy"] = Field(description="Always `ResidencyPolicy`.")
    spec: ResidencyPolicySpec = Field(description="Groups and data classes.")


# --------------------------------------------------------------------------- TeamQuota


class FlavourQuota(Model):
    """A team's GPUs of one flavour, fleet-wide."""

    flavour: FlavourName = Field(description="The flavour.", examples=["h100-80gb"])
    nominal: Annotated[int, Field(ge=0)] = Field(
        description="GPUs the team is guaranteed, fleet-wide.", examples=[32])
    borrowing_limit: Annotated[int, Field(ge=0)] | None = Field(
        None, description="GPUs the team may borrow from its cohort beyond nominal; "
                          "unset: no limit (as Kueue's borrowingLimit).", examples=[16])
    """GPUs the team may borrow from its cohort beyond nominal; unset: no limit (Kueue)."""


class TeamQuotaSpec(Model):
    """The team's GPUs per flavour, and the cohort it borrows from."""

    cohort: DnsLabel | None = Field(
        None, description="Teams in one cohort may lend each other unused quota.",
        examples=["research"])
    gpus: tuple[FlavourQuota, ...] = Field(
        (), description="One entry per flavour; a flavour not listed has nominal 0.")

    @model_validator(mode="after")
    def _unique_flavours(self) -> TeamQuotaSpec:
        unique(tuple(g.flavour for g in self.gpus), "flavour")
        return self


class TeamQuota(ClusterScopedBase):
    """Fleet-wide GPU quota of one team (`metadata.name`), per flavour, with borrowing
    from a cohort (Kueue's ClusterQueue). A team without one has no limit; a workload
    over quota stays Pending. In `policies/*.yaml`."""

    kind: Literal["TeamQuota"] = Field(description="Always `TeamQuota`.")
    spec: TeamQuotaSpec = Field(description="GPUs per flavour and the cohort.")

    @property
    def team(self) -> Team:
        return Team(self.metadata.name)



# Extensions (docs/fleet-repo-extensions.md); what they mean is in fleet.guardrails and
# fleet.owners, which merge and check them.


RegistryPrefix = Annotated[str, Field(min_length=1, max_length=255)]


class GuardrailRules(Model):
    """Limits on Workloads; every rule is optional, unset means no limit."""


    max_gpus_per_workload: Annotated[int, Field(ge=0)] | None = Field(
        None, description="At most this many GPUs per workload (replicas x count).",
        examples=[64])
    max_replicas: Annotated[int, Field(ge=1)] | None = Field(
        None, description="At most this many replicas per workload.")
    allowed_flavours: tuple[FlavourName, ...] | None = Field(
        None, description="Workloads may only ask for these flavours.")
    required_labels: tuple[LabelKey, ...] | None = Field(
        None, description="Label keys every workload must set in `metadata.labels`.",
        examples=[["cost-center"]])
    allowed_registries: tuple[RegistryPrefix, ...] | None = Field(
        None, description="Images must start with one of these prefixes.",
        examples=[["registry.internal/"]])


class GuardrailsSpec(Model):
    """Fleet-wide rules, and per team the rules it overrides."""

    defaults: GuardrailRules = Field(
        default_factory=GuardrailRules,
        description="Fleet-wide rules; a team's entry replaces the rules it sets, rule "
                    "by rule.")
    """Fleet-wide rules; a team's entry replaces the rules it sets, rule by rule."""
    teams: dict[DnsLabel, GuardrailRules] = Field(
        default_factory=dict, description="Per team, the rules that replace the "
                                          "defaults.")


class Guardrails(ClusterScopedBase):
    """Limits every Workload must respect (an extension): GPUs, replicas, flavours,
    labels and image registries; a violation fails `fleet validate` and the plan. In
    `policies/*.yaml`."""

    kind: Literal["Guardrails"] = Field(description="Always `Guardrails`.")
    spec: GuardrailsSpec = Field(description="Default rules and per-team overrides.")


class OwnerRule(Model):
    """Who must approve changes under one path."""

    path: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        description="A CODEOWNERS-style glob relative to the fleet root: `*`, `**`, `?`.",
        examples=["clusters/**", "workloads/vision-team/"])
    """A CODEOWNERS-style glob relative to the fleet root: `*`, `**`, `?`."""
    owners: Annotated[tuple[Annotated[str, Field(min_length=1)], ...],
                      Field(min_length=1)] = Field(
        description="The forge users or teams whose approval the change needs.",
        examples=[["@acme/platform"]])


class OwnersSpec(Model):
    """The approval rules, in order."""

    rules: tuple[OwnerRule, ...] = Field((), description="Path rules; each path's owners "
                                                         "are named in the plan.")


class Owners(ClusterScopedBase):
    """Who must approve changes to which files (an extension, like CODEOWNERS): the PR
    plan flags such changes. In `policies/*.yaml`."""

    kind: Literal["Owners"] = Field(description="Always `Owners`.")
    spec: OwnersSpec = Field(description="The approval rules.")
