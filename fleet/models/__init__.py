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

from typing import Any

from fleet.models.base import (
    API_VERSION,
    CountryCode,
    DnsLabel,
    EnvName,
    FlavourName,
    LabelKey,
    LabelValue,
    Model,
    NonEmptyStr,
    ObjectMeta,
    Quantity,
)
from fleet.models.cluster import (
    Cluster,
    ClusterSpec,
    Connection,
    GpuAllocation,
    GpuOffer,
    SpotNodes,
    Stack,
    Taint,
    TaintEffect,
)
from fleet.models.policy import (
    DataClassRule,
    FlavourQuota,
    GroupName,
    GuardrailRules,
    Guardrails,
    GuardrailsSpec,
    JurisdictionRef,
    OwnerRule,
    Owners,
    OwnersSpec,
    RegistryPrefix,
    ResidencyPolicy,
    ResidencyPolicySpec,
    TeamQuota,
    TeamQuotaSpec,
)
from fleet.models.workload import (
    DEFAULT_SPOT,
    DEFAULT_UNREACHABLE_GRACE_SECONDS,
    UNREACHABLE_TOLERATION_KEY,
    GpuRequest,
    InferenceSpec,
    LabelSelector,
    LabelSelectorRequirement,
    Placement,
    Resources,
    SpotRule,
    Spread,
    Toleration,
    Workload,
    WorkloadSpec,
    WorkloadType,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_SPOT",
    "DEFAULT_UNREACHABLE_GRACE_SECONDS",
    "KINDS",
    "UNREACHABLE_TOLERATION_KEY",
    "Cluster",
    "ClusterSpec",
    "Connection",
    "CountryCode",
    "DataClassRule",
    "DnsLabel",
    "Document",
    "EnvName",
    "FlavourName",
    "FlavourQuota",
    "GpuAllocation",
    "GpuOffer",
    "GpuRequest",
    "GroupName",
    "GuardrailRules",
    "Guardrails",
    "GuardrailsSpec",
    "InferenceSpec",
    "JurisdictionRef",
    "LabelKey",
    "LabelSelector",
    "LabelSelectorRequirement",
    "LabelValue",
    "Model",
    "NonEmptyStr",
    "ObjectMeta",
    "OwnerRule",
    "Owners",
    "OwnersSpec",
    "Placement",
    "Quantity",
    "RegistryPrefix",
    "ResidencyPolicy",
    "ResidencyPolicySpec",
    "Resources",
    "SpotNodes",
    "SpotRule",
    "Spread",
    "Stack",
    "Taint",
    "TaintEffect",
    "TeamQuota",
    "TeamQuotaSpec",
    "Toleration",
    "Workload",
    "WorkloadSpec",
    "WorkloadType",
    "json_schemas",
    "schema_file",
]

Document = Cluster | ResidencyPolicy | TeamQuota | Workload | Guardrails | Owners

KINDS: dict[str, type[Document]] = {
    "Cluster": Cluster,
    "ResidencyPolicy": ResidencyPolicy,
    "TeamQuota": TeamQuota,
    "Workload": Workload,
    "Guardrails": Guardrails,
    "Owners": Owners,
}


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_file(kind: str) -> str:
    """The file name of a kind's schema in `docs/schema/`: `workload.json`."""
    return f"{kind.lower()}.json"


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each kind, keyed by kind, for editors and `fleet schema`.

    Every kind and every field has a `description` (the models' docstrings and
    `Field(description=...)`: the one place they are written), with `examples` where a
    value's shape is not obvious, so an editor's hover explains the field."""
    out: dict[str, dict[str, Any]] = {}
    for kind, model in KINDS.items():
        schema = model.model_json_schema(by_alias=True, mode="validation")
        out[kind] = {"$schema": JSON_SCHEMA_DIALECT,
                     "$id": f"https://aifleet.dev/schemas/v1alpha1/{schema_file(kind)}",
                     **schema, "title": kind}
    return out
