"""What kube-apiserver 1.35 refuses with 422 Invalid, for every kind the simulator serves.

The real server validates an object after decoding and defaulting it, and answers every
problem it finds at once: one `Invalid` Status whose message lists each
`<field>: <ErrorBody>` (`[a, b]` when there are several, duplicates dropped, as
`field.ErrorList.ToAggregate` does) and whose `details.causes` carry each field error's
type (`FieldValueInvalid`, `FieldValueRequired`, ...), body and path
(`k8s.io/apimachinery/pkg/api/errors.NewInvalid`). This module is that step:

- `Errs` collects field errors worded as `k8s.io/apimachinery/pkg/util/validation/field`
  words them (`Invalid value: "x": <detail>`, `Required value`, `Unsupported value: "x":
  supported values: "a", "b"`, `Duplicate value: "x"`, `Too long: ...`);
- `validate_create` / `validate_update` run the object-meta rules
  (`apimachinery/pkg/api/validation/objectmeta.go`) and the kind's own rules
  (`validation_kinds.py`, pod templates in `validation_pods.py`), and on update the
  immutable fields, then raise one 422 if anything was found.

The string rules (DNS-1123 label and subdomain, DNS-1035 label, qualified names, label
values, ports) are `k8s.io/apimachinery/pkg/util/validation` and
`.../api/validate/content`, message for message. Wrong JSON types never get here: they
are the decoder's errors (`decoding.py`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clusters.sim.errors import invalid
from clusters.sim.resources import Resource

Obj = dict[str, Any]


class Unquoted(str):
    """A bad value printed as is: a Go `fmt.Stringer` such as a Quantity (`500m`)."""

    __slots__ = ()


def as_map(value: Any) -> Obj:
    """`value` if it is a JSON object, else an empty one (the decoder vouches for the
    types; this keeps a missing field from needing a special case)."""
    return value if isinstance(value, dict) else {}


def go_quote(text: str) -> str:
    """Go's `%q` for the strings the API carries (JSON escaping agrees on them)."""
    return json.dumps(text, ensure_ascii=False)


def render(value: Any) -> str:
    """A bad value as `field.Error.ErrorBody` prints it: numbers and booleans bare,
    strings quoted, Stringers bare, nil as `null`, anything else as compact JSON (what a
    1.35 server prints, e.g. `spec.clusterIPs[0]: Invalid value: ["None"]: ...`)."""
    if value is None:
        return "null"
    if isinstance(value, Unquoted):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return go_quote(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


@dataclass
class Errs:
    """A `field.ErrorList`: (path, cause type, ErrorBody) in the order found."""

    causes: list[tuple[str, str, str]] = field(default_factory=list)

    def _add(self, path: str, kind: str, body: str, detail: str = "") -> None:
        self.causes.append((path, kind, f"{body}: {detail}" if detail else body))

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self._add(path, "FieldValueInvalid", f"Invalid value: {render(value)}", detail)

    def required(self, path: str, detail: str = "") -> None:
        self._add(path, "FieldValueRequired", "Required value", detail)

    def forbidden(self, path: str, detail: str) -> None:
        self._add(path, "FieldValueForbidden", "Forbidden", detail)

    def duplicate(self, path: str, value: Any) -> None:
        self._add(path, "FieldValueDuplicate", f"Duplicate value: {render(value)}")

    def not_found(self, path: str, value: Any) -> None:
        self._add(path, "FieldValueNotFound", f"Not found: {render(value)}")

    def not_supported(self, path: str, value: Any, valid: Sequence[str]) -> None:
        detail = "supported values: " + ", ".join(go_quote(v) for v in valid) if valid \
            else ""
        self._add(path, "FieldValueNotSupported", f"Unsupported value: {render(value)}",
                  detail)

    def too_long(self, path: str, limit: int) -> None:
        self._add(path, "FieldValueTooLong", "Too long",
                  f"must have at most {limit} bytes")

    def immutable(self, path: str, value: Any) -> None:
        """`ValidateImmutableField`: the new value, then `field is immutable`."""
        self.invalid(path, value, "field is immutable")

    def each(self, path: str, value: Any, messages: Sequence[str]) -> None:
        """One Invalid per message, as every `for _, msg := range IsX(v)` loop does."""
        for msg in messages:
            self.invalid(path, value, msg)


# ------------------------------------------------------------------ string rules
# k8s.io/apimachinery/pkg/util/validation/validation.go and api/validate/content/*.go

_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_FMT = _LABEL_FMT + "(\\." + _LABEL_FMT + ")*"
_DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_VALUE_FMT = "(" + _KEY_FMT + ")?"
_LABEL_RE = re.compile(f"^{_LABEL_FMT}$")
_SUBDOMAIN_RE = re.compile(f"^{_SUBDOMAIN_FMT}$")
_DNS1035_RE = re.compile(f"^{_DNS1035_FMT}$")
_KEY_RE = re.compile(f"^{_KEY_FMT}$")
_VALUE_RE = re.compile(f"^{_VALUE_FMT}$")
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_RE = re.compile(f"^{_CONFIG_KEY_FMT}$")
_PERCENT_RE = re.compile(r"^[0-9]+%$")


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """`validation.RegexError`."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def dns1123_label(value: str) -> list[str]:
    errs = [max_len_error(63)] if len(value) > 63 else []
    if not _LABEL_RE.match(value):
        errs.append("must not contain dots" if _SUBDOMAIN_RE.match(value) else regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric "
            "characters or '-', and must start and end with an alphanumeric character",
            _LABEL_FMT, "my-name", "123-abc"))
    return errs


def dns1123_subdomain(value: str) -> list[str]:
    errs = [max_len_error(253)] if len(value) > 253 else []
    if not _SUBDOMAIN_RE.match(value):
        errs.append(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character",
            _SUBDOMAIN_FMT, "example.com"))
    return errs


def dns1035_label(value: str) -> list[str]:
    errs = [max_len_error(63)] if len(value) > 63 else []
    if not _DNS1035_RE.match(value):
        errs.append(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
            "start with an alphabetic character, and end with an alphanumeric character",
            _DNS1035_FMT, "my-name", "abc-123"))
    return errs


_KEY_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and "
            "end with an alphanumeric character")


def qualified_name(value: str) -> list[str]:
    """`content.IsLabelKey` (IsQualifiedName): `[prefix/]name`."""
    parts = value.split("/")
    errs: list[str] = []
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain(prefix))
    else:
        return ["a valid label key " + regex_error(_KEY_MSG, _KEY_FMT, "MyName", "my.name",
                                                   "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _KEY_RE.match(name):
        errs.append("name part " + regex_error(_KEY_MSG, _KEY_FMT, "MyName", "my.name",
                                               "123-abc"))
    return errs


def label_value(value: str) -> list[str]:
    errs = [max_len_error(63)] if len(value) > 63 else []
    if not _VALUE_RE.match(value):
        errs.append(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character",
            _VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def path_segment(name: str) -> list[str]:
    """apimachinery `path.IsValidPathSegmentName`, message for message."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in name]


def port_number(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [range_error(1, 65535)]


def port_name(name: str) -> list[str]:
    """`IsValidPortName` (IANA_SVC_NAME)."""
    errs = [max_len_error(15)] if len(name) > 15 else []
    if not re.match(r"^[-a-z0-9]+$", name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name and (name[0] == "-" or name[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def config_key(key: str) -> list[str]:
    """`IsConfigMapKey`."""
    errs = [max_len_error(253)] if len(key) > 253 else []
    if not _CONFIG_KEY_RE.match(key):
        errs.append(regex_error("a valid config key must consist of alphanumeric "
                                "characters, '-', '_' or '.'", _CONFIG_KEY_FMT,
                                "key.name", "KEY_NAME", "key-name"))
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_percent(text: str) -> bool:
    return bool(_PERCENT_RE.match(text))


# ------------------------------------------------------------------ common checks

IS_NEGATIVE = "must be greater than or equal to 0"  # apimachinery IsNegativeErrorMsg


def nonnegative(errs: Errs, path: str, value: Any) -> None:
    """`ValidateNonnegativeField` for an optional integer field."""
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        errs.invalid(path, value, IS_NEGATIVE)


def labels(errs: Errs, path: str, value: Any) -> None:
    """`metav1validation.ValidateLabels`: every key a qualified name, every value a
    label value; the cause is on the map (`metadata.labels`), not on the key."""
    if not isinstance(value, dict):
        return
    for k, v in value.items():
        errs.each(path, k, qualified_name(str(k)))
        errs.each(path, v, label_value(str(v)))


ANNOTATIONS_LIMIT = 256 * (1 << 10)


def annotation_map(errs: Errs, path: str, value: Any) -> None:
    """`ValidateAnnotations`: keys are qualified names case-insensitively; keys and
    values together at most 256 KiB."""
    if not isinstance(value, dict):
        return
    for k in value:
        errs.each(path, k, qualified_name(str(k).lower()))
    size = sum(len(str(k).encode()) + len(str(v or "").encode()) for k, v in value.items())
    if size > ANNOTATIONS_LIMIT:  # bytes, as Go's len()
        errs.too_long(path, ANNOTATIONS_LIMIT)


# ------------------------------------------------------------------ object meta

NameRule = Callable[[str], list[str]]
# pkg/apis/core/validation: ValidateNamespaceName (DNS-1123 label), ValidateServiceName
# (DNS-1035 label); every other kind served here is NameIsDNSSubdomain (Pods, ConfigMaps,
# Nodes, Deployments (apps), Jobs (batch), Leases (coordination), Events).
# RBAC's four kinds are `ValidateRBACName` = `path.IsValidPathSegmentName` (`a:b` is valid).
_NAME_RULES: dict[str, NameRule] = {
    "Namespace": dns1123_label, "Service": dns1035_label,
    **dict.fromkeys(("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"),
                    path_segment)}
MAX_GENERATED_PREFIX = 63 - 5  # apiserver/pkg/storage/names: maxGeneratedNameLength


def name_rule(kind: str) -> NameRule:
    return _NAME_RULES.get(kind, dns1123_subdomain)


def _prefix(name: str) -> str:
    """`maskTrailingDash`: a generateName may end in '-'."""
    return name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name


def _meta_common(errs: Errs, meta: Obj) -> None:
    labels(errs, "metadata.labels", meta.get("labels"))
    annotation_map(errs, "metadata.annotations", meta.get("annotations"))
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, dict):
            _owner_reference(errs, ref)
    for fin in meta.get("finalizers") or []:
        errs.each("metadata.finalizers", fin, qualified_name(str(fin)))


def _owner_reference(errs: Errs, ref: Obj) -> None:
    """`validateOwnerReference`."""
    path = "metadata.ownerReferences"
    api_version = str(ref.get("apiVersion") or "")
    if not api_version.rsplit("/", 1)[-1]:
        errs.invalid(f"{path}.apiVersion", api_version, "version must not be empty")
    for key in ("kind", "name", "uid"):
        if not ref.get(key):
            errs.invalid(f"{path}.{key}", str(ref.get(key) or ""), "must not be empty")


def meta_create(errs: Errs, kind: str, meta: Obj) -> None:
    """`ValidateObjectMetaAccessor`: generateName, name, then the common rules."""
    rule = name_rule(kind)
    generate = meta.get("generateName")
    if generate:
        errs.each("metadata.generateName", generate, rule(_prefix(str(generate))))
    name = meta.get("name")
    if not name:
        errs.required("metadata.name", "name or generateName is required")
    else:
        errs.each("metadata.name", name, rule(str(name)))
    _meta_common(errs, meta)


def meta_update(errs: Errs, meta: Obj, old: Obj | None = None) -> None:
    """`ValidateObjectMetaAccessorUpdate` (staging/src/k8s.io/apimachinery/pkg/api/
    validation/objectmeta.go): the name cannot change (the store keeps it), labels,
    annotations, owners and finalizers are checked again, and an object being deleted
    (`old` has a deletionTimestamp) takes no new finalizer, main or `/status` write
    alike (`ValidateNoNewFinalizers`)."""
    if old is not None and old.get("deletionTimestamp"):
        extra = sorted(set(_strings(meta.get("finalizers"))) -
                       set(_strings(old.get("finalizers"))))
        if extra:
            listed = ", ".join(f'"{f}"' for f in extra)
            errs.forbidden("metadata.finalizers", "no new finalizers can be added if the "
                           f"object is being deleted, found new finalizers "
                           f"[]string{{{listed}}}")
    _meta_common(errs, meta)


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


# ------------------------------------------------------------------ entry points


def raise_if_any(res: Resource, name: str, errs: Errs) -> None:
    if errs.causes:
        raise invalid(res.kind, name, errs.causes, group=res.group)


def validate_create(res: Resource, obj: Obj) -> None:
    """422 for everything a 1.35 server refuses in a new (decoded, defaulted) object."""
    from clusters.sim import validation_kinds

    errs = Errs()
    meta = obj.get("metadata") or {}
    meta_create(errs, res.kind, meta)
    validation_kinds.validate_spec(res.kind, obj, errs)
    validation_kinds.validate_new(res.kind, obj, errs)
    raise_if_any(res, str(meta.get("name") or ""), errs)


def validate_update(res: Resource, old: Obj, new: Obj) -> None:
    """422 for a replacement a 1.35 server refuses: the new object's own rules plus the
    kind's immutable fields, all in one answer."""
    from clusters.sim import validation_kinds

    errs = Errs()
    meta_update(errs, new.get("metadata") or {}, old.get("metadata") or {})
    validation_kinds.validate_spec(res.kind, new, errs)
    validation_kinds.validate_immutable(res.kind, old, new, errs)
    raise_if_any(res, str(old["metadata"]["name"]), errs)


def validate_status_update(res: Resource, old: Obj, new: Obj) -> None:
    """422 for a `/status` write a 1.35 server refuses: `rest.BeforeUpdate` checks the
    metadata of every update (`validateCommonFields`), status writes included; the
    kinds' own status rules are not reproduced (docs/simulator.md). Only the parts
    that differ from the stored object are checked again: the stored ones passed when
    they were written, and a status write (the kubelet's, thousands a minute) mostly
    changes none."""
    meta, ometa = new.get("metadata") or {}, old.get("metadata") or {}
    changed = {k: v for k, v in meta.items()
               if k in ("labels", "annotations", "finalizers", "ownerReferences")
               and v != ometa.get(k)}
    if not changed:
        return
    errs = Errs()
    meta_update(errs, changed, ometa)
    raise_if_any(res, str(old["metadata"]["name"]), errs)
