"""The base of every repo model, the checked string types and the document header
(shared/spec/fleet-repo.md). See `fleet.models`."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.alias_generators import to_camel

from fleet.jurisdictions import is_country
from fleet.quantity import QuantityError
from fleet.quantity import parse as parse_quantity

API_VERSION = "aifleet.dev/v1alpha1"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_FLAVOUR = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
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
    # The API server's own grammar (`fleet.quantity`, apimachinery `ParseQuantity`),
    # so every spelling it takes is taken (`0.5`, `1e3`, `1024Mi`); a request must not
    # be negative (`pkg/apis/core/validation/validation.go`, `ValidateNonnegativeQuantity`).
    try:
        parsed = parse_quantity(value)
    except QuantityError:
        raise ValueError(
            f"{value!r} is not a Kubernetes quantity (e.g. 500m, 32, 512Gi)") from None
    if parsed.value < 0:
        raise ValueError(f"{value!r}: a resource request must not be negative")
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid environment variable name")
    return value


def unique(items: tuple[str, ...], what: str) -> tuple[str, ...]:
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
    shared_whole: ClassVar[bool] = True
    """Whether `fleet.sharing.Sharer` may make equal instances one object (False where
    a name makes every instance unique: only the members are shared)."""

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled by value, without pydantic's generic state dict: cheaper both
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
    """The document's name and labels, as in Kubernetes."""

    shared_whole: ClassVar[bool] = False

    name: DnsLabel = Field(
        description="The document's name, a DNS-1123 label (lower-case letters, digits "
                    "and '-', at most 63). A Cluster's name is the cluster's name "
                    "everywhere; a TeamQuota's is the team.",
        examples=["eu-fra-1", "llama-finetune"])
    namespace: DnsLabel | None = Field(
        None, description="Workloads only: the team, equal to the folder "
                          "`workloads/<team>/`; the workload id is `<namespace>/<name>`. "
                          "Fleet-wide kinds have none.",
        examples=["nlp-team"])
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        description="Kubernetes-style labels. On a Cluster, what a workload's "
                    "`clusterSelector` matches; on a Workload, copied to its objects.",
        examples=[{"tier": "prod"}])
    annotations: dict[LabelKey, str] = Field(
        default_factory=dict, description="Free-form notes for people and tools; not "
                                          "read by placement.")



class DocumentBase(Model):
    """What every document has: `apiVersion` and `metadata`."""

    shared_whole: ClassVar[bool] = False

    api_version: Literal["aifleet.dev/v1alpha1"] = Field(
        description="The format version: always `aifleet.dev/v1alpha1`.")
    metadata: ObjectMeta = Field(description="Name, namespace (Workloads) and labels.")


class ClusterScopedBase(DocumentBase):
    """A fleet-wide document: no `metadata.namespace`."""

    @model_validator(mode="after")
    def _no_namespace(self) -> ClusterScopedBase:
        if self.metadata.namespace is not None:
            raise ValueError(
                f"{type(self).__name__} is fleet-wide: metadata.namespace is not allowed"
            )
        return self
