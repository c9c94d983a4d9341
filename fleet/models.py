"""Models of the fleet repo format, aifleet.dev/v1alpha1 (shared/spec/fleet-repo.md).

Four kinds: Cluster, ResidencyPolicy, TeamQuota and Workload, plus two of ours in
`policies/`, Guardrails and Owners. Every model is frozen and
rejects unknown fields, because a typo in a placement rule (`dataclass:` for
`dataClass:`) silently dropped would place EU personal data anywhere. YAML keys are
camelCase; Python attributes are snake_case through aliases, and error locations come
back in the YAML spelling.

A model checks what one document can check on its own (shapes, ranges, codes). What
needs the whole repo (a dataClass defined in a policy, a flavour offered by some
cluster) is checked in `fleet.spec`.

Extensions to the spec (documented in docs/fleet-repo-extensions.md):
- `Workload.spec.args`, next to `command`.
- `Workload.spec.placement.clusters`: an explicit allow-list of cluster names (like
  Karmada's `clusterAffinity.clusterNames`), narrowing placement further.
- `Toleration.tolerationSeconds` on the key `aifleet.dev/unreachable`: how long the
  workload stays on an unreachable cluster before failover (default 300 s).
- `gang` defaults to true for training and batch, false for inference.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.alias_generators import to_camel

from fleet.ids import ClusterName, Flavour, Jurisdiction, Team, WorkloadId, workload_id
from fleet.jurisdictions import ANYWHERE, is_country, is_group_name

API_VERSION = "aifleet.dev/v1alpha1"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_FLAVOUR = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return value


def _label_key(value: str) -> str:
    prefix, sep, name = value.rpartition("/")
    if sep and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        raise ValueError(f"label key {value!r}: prefix {prefix!r} is not a DNS-1123 subdomain")
    if len(name) > 63 or not _LABEL_NAME.match(name):
        raise ValueError(
            f"label key {value!r}: name part must be 1-63 alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return value


def _label_value(value: str) -> str:
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        raise ValueError(
            f"label value {value!r} must be at most 63 alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return value


def _flavour(value: str) -> str:
    if len(value) > 63 or not _FLAVOUR.match(value):
        raise ValueError(
            f"flavour {value!r} must be lower-case letters, digits, '-' and '.', "
            "at most 63 characters"
        )
    return value


def _country(value: str) -> str:
    if not is_country(value):
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. DE, US, BR)")
    return value


def _quantity(value: object) -> object:
    # YAML reads `cpu: 32` as an int; Kubernetes quantities are strings.
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    return value


def _check_quantity(value: str) -> str:
    if not _QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 32, 512Gi)")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid environment variable name")
    return value


def _unique(items: tuple[str, ...], what: str) -> tuple[str, ...]:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise ValueError(f"{what} {item!r} is listed twice")
        seen.add(item)
    return items


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
FlavourName = Annotated[str, AfterValidator(_flavour)]
CountryCode = Annotated[str, AfterValidator(_country)]
Quantity = Annotated[str, BeforeValidator(_quantity), AfterValidator(_check_quantity)]
EnvName = Annotated[str, AfterValidator(_env_name)]
NonEmptyStr = Annotated[str, Field(min_length=1)]


class Model(BaseModel):
    """Base of every repo model: frozen, unknown fields rejected, camelCase in YAML."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        strict=False,
    )

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled by value, without pydantic's generic state dict: ~35% faster both
        # ways, and a cold `fleet plan` sends ~5,000 parsed files through a pipe.
        # These models have no extra fields (extra="forbid") and no private attributes.
        return (_rebuild, (type(self), self.__dict__, self.__pydantic_fields_set__))


def _rebuild(cls: type[Model], fields: dict[str, Any], fields_set: set[str]) -> Model:
    """A model from `Model.__reduce__`: what pydantic's own `__setstate__` sets."""
    m = object.__new__(cls)
    object.__setattr__(m, "__dict__", fields)
    object.__setattr__(m, "__pydantic_fields_set__", fields_set)
    object.__setattr__(m, "__pydantic_extra__", None)
    object.__setattr__(m, "__pydantic_private__", None)
    return m


class ObjectMeta(Model):
    name: DnsLabel
    namespace: DnsLabel | None = None
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    annotations: dict[LabelKey, str] = Field(default_factory=dict)


# --------------------------------------------------------------------------- Cluster


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
        _unique(tuple(g.flavour for g in self.gpus), "flavour")
        return self


class _Document(Model):
    api_version: Literal["aifleet.dev/v1alpha1"]
    metadata: ObjectMeta


class _ClusterScoped(_Document):
    @model_validator(mode="after")
    def _no_namespace(self) -> _ClusterScoped:
        if self.metadata.namespace is not None:
            raise ValueError(
                f"{type(self).__name__} is fleet-wide: metadata.namespace is not allowed"
            )
        return self


class Cluster(_ClusterScoped):
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


# --------------------------------------------------------------------------- Residency


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


class ResidencyPolicy(_ClusterScoped):
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
        _unique(tuple(g.flavour for g in self.gpus), "flavour")
        return self


class TeamQuota(_ClusterScoped):
    kind: Literal["TeamQuota"]
    spec: TeamQuotaSpec

    @property
    def team(self) -> Team:
        return Team(self.metadata.name)


# --------------------------------------------------------------------------- Workload

WorkloadType = Literal["training", "inference", "batch"]
UNREACHABLE_TOLERATION_KEY = "aifleet.dev/unreachable"
DEFAULT_UNREACHABLE_GRACE_SECONDS = 300


class GpuRequest(Model):
    count: Annotated[int, Field(ge=1, le=1024)]
    flavours: Annotated[tuple[FlavourName, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_flavours(self) -> GpuRequest:
        _unique(self.flavours, "flavour")
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
        """Kubernetes semantics: empty key with Exists matches every taint."""
        if self.effect is not None and self.effect != taint.effect:
            return False
        if self.key is None:
            return True
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
    image: Annotated[str, Field(min_length=1, max_length=512)]
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: dict[EnvName, str] = Field(default_factory=dict)
    replicas: Annotated[int, Field(ge=1, le=10_000)] = 1
    resources: Resources
    placement: Placement = Field(default_factory=Placement)
    priority: Annotated[int, Field(ge=-1_000_000, le=1_000_000)] = 0
    inference: InferenceSpec | None = None

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


class Workload(_Document):
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


# --------------------------------------------------------------------------- Guardrails, Owners
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


class Guardrails(_ClusterScoped):
    kind: Literal["Guardrails"]
    spec: GuardrailsSpec


class OwnerRule(Model):
    path: Annotated[str, Field(min_length=1, max_length=1024)]
    """A CODEOWNERS-style glob relative to the fleet root: `*`, `**`, `?`."""
    owners: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1)]


class OwnersSpec(Model):
    rules: tuple[OwnerRule, ...] = ()


class Owners(_ClusterScoped):
    kind: Literal["Owners"]
    spec: OwnersSpec


Document = Cluster | ResidencyPolicy | TeamQuota | Workload | Guardrails | Owners

KINDS: dict[str, type[Document]] = {
    "Cluster": Cluster,
    "ResidencyPolicy": ResidencyPolicy,
    "TeamQuota": TeamQuota,
    "Workload": Workload,
    "Guardrails": Guardrails,
    "Owners": Owners,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each kind, keyed by kind, for editors and `fleet schema`."""
    out: dict[str, dict[str, Any]] = {}
    for kind, model in KINDS.items():
        schema = model.model_json_schema(by_alias=True, mode="validation")
        schema["$id"] = f"https://aifleet.dev/schemas/v1alpha1/{kind}.json"
        schema["title"] = kind
        out[kind] = schema
    return out
