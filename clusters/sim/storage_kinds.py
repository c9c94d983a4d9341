"""What kube-apiserver does to the storage-only kinds on a write: Secrets, ConfigMaps, RBAC.

These kinds have no controller; the server's work is decoding, defaulting and
validating them, and clients (helm's Secret storage driver, `kubectl create secret`)
depend on exactly that:

- Secret `data` and ConfigMap `binaryData` are `[]byte` fields, so their JSON values
  are base64 that the decoder checks (Go's `encoding/base64` StdEncoding): a value that
  is not is a 400 `Secret in version "v1" cannot be handled as a Secret: illegal base64
  data at input byte N`, N as Go counts it (`_base64_error`).
- Secret `stringData` is write-only: conversion to the internal type merges it into
  `data` (it wins over a `data` key of the same name) and it is never stored
  (`pkg/apis/core/v1/conversion.go` `Convert_v1_Secret_To_core_Secret`).
- Secret `type` defaults to `Opaque` (`pkg/apis/core/v1/defaults.go`) and is immutable;
  an object with `immutable: true` keeps its data and its `immutable`
  (`pkg/apis/core/validation/validation.go` `ValidateSecretUpdate`,
  `ValidateConfigMapUpdate`).
- Size: the data of a Secret or ConfigMap may hold at most 1 MiB (`core.MaxSecretSize`,
  1048576 bytes, decoded): 422 `data: Too long: may not be more than 1048576 bytes`
  for a Secret, and for a ConfigMap the whole object (`[]: Too long: ...`), as
  `ValidateSecret` / `ValidateConfigMap` word it.
- Keys of `data`, `binaryData` and `stringData` are config keys (apimachinery
  `IsConfigMapKey`: `[-._a-zA-Z0-9]+`, at most 253, not `.`/`..` nor starting `..`),
  and a ConfigMap key may not be in both `data` and `binaryData`.
- RBAC object names are path segments, not DNS names (`system:controller:x` is a
  valid ClusterRole name): `pkg/apis/rbac/validation` uses `ValidatePathSegmentName`.

Pure functions over plain dicts, called by the store on every create and update, so
REST writes, patches, server-side apply and dry runs all pass through them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from clusters.sim.errors import bad_request, invalid
from clusters.sim.resources import Resource
from clusters.sim.validation import config_key

MAX_DATA_BYTES = 1024 * 1024
"""`core.MaxSecretSize`: the most a Secret's or a ConfigMap's data may hold."""

_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_NEWLINES = frozenset(b"\r\n")
_IMMUTABLE_SET = "field is immutable when `immutable` is set"


def on_write(res: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Decode, default and validate `obj` (in place) as the server does for its kind;
    `old` is the stored object on an update, None on a create."""
    kind = res.kind
    if kind == "Secret":
        _decode_bytes(res, obj, "data")
        _merge_string_data(obj)
        obj["type"] = obj.get("type") or "Opaque"
        _check_keys(res, obj, ("data",))
        _check_size(res, obj, ("data",), "data")
    elif kind == "ConfigMap":
        _decode_bytes(res, obj, "binaryData")
        _check_keys(res, obj, ("data", "binaryData"))
        _check_size(res, obj, ("data", "binaryData"), "[]")
    else:
        return
    if old is not None:
        _check_update(res, old, obj)


# ------------------------------------------------------------------ bytes


def _base64_error(text: str) -> int | None:
    """The offset Go's `base64.StdEncoding.Decode` reports for `text`, or None when it
    decodes. A port of `decodeQuantum` (encoding/base64): CR and LF are skipped,
    padding is required, anything after the padding is trailing garbage."""
    src = text.encode()
    si, n = 0, len(src)
    while True:
        j = 0
        while j < 4:
            if si == n:
                if j == 0:
                    return None
                return si - j
            c = src[si]
            si += 1
            if c in _B64:
                j += 1
                continue
            if c in _NEWLINES:
                continue
            if c != ord("="):
                return si - 1
            if j in (0, 1):
                return si - 1
            if j == 2:
                while si < n and src[si] in _NEWLINES:
                    si += 1
                if si == n:
                    return n
                if src[si] != ord("="):
                    return si - 1
                si += 1
            while si < n and src[si] in _NEWLINES:
                si += 1
            return si if si < n else None


def _decode_bytes(res: Resource, obj: dict[str, Any], field: str) -> None:
    values = obj.get(field)
    if not isinstance(values, dict):
        return
    for value in values.values():
        offset = _base64_error(value) if isinstance(value, str) else 0
        if offset is not None:
            raise bad_request(f'{res.kind} in version "{res.version}" cannot be handled as '
                              f"a {res.kind}: illegal base64 data at input byte {offset}")


def _decoded_len(value: Any) -> int:
    try:
        return len(base64.b64decode(str(value).replace("\r", "").replace("\n", "")))
    except (binascii.Error, ValueError):
        return 0


def _merge_string_data(obj: dict[str, Any]) -> None:
    string_data = obj.pop("stringData", None)
    if not isinstance(string_data, dict) or not string_data:
        return
    data = dict(obj.get("data") or {})
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    obj["data"] = data


def _check_keys(res: Resource, obj: dict[str, Any], fields: tuple[str, ...]) -> None:
    causes: list[tuple[str, str, str]] = []
    binary = obj.get("binaryData") if "binaryData" in fields else None
    for field in fields:
        values = obj.get(field)
        if not isinstance(values, dict):
            continue
        for key in values:
            where = f"{field}[{key}]"
            causes += [(where, "FieldValueInvalid", f'Invalid value: "{key}": {msg}')
                       for msg in config_key(str(key))]
            if field == "data" and isinstance(binary, dict) and key in binary:
                causes.append((where, "FieldValueInvalid", f'Invalid value: "{key}": '
                               "duplicate of key present in binaryData"))
    if causes:
        raise invalid(res.kind, obj["metadata"].get("name", ""), causes, res.group)


def _check_size(res: Resource, obj: dict[str, Any], fields: tuple[str, ...],
                path: str) -> None:
    total = 0
    for field in fields:
        values = obj.get(field)
        if not isinstance(values, dict):
            continue
        encoded = field == "binaryData" or res.kind == "Secret"
        for value in values.values():
            total += _decoded_len(value) if encoded else len(str(value).encode())
    if total > MAX_DATA_BYTES:
        raise invalid(res.kind, obj["metadata"].get("name", ""), [(
            path, "FieldValueTooLong",
            f"Too long: may not be more than {MAX_DATA_BYTES} bytes")], res.group)


def _check_update(res: Resource, old: dict[str, Any], new: dict[str, Any]) -> None:
    name = old["metadata"]["name"]
    causes: list[tuple[str, str, str]] = []
    if res.kind == "Secret" and new.get("type") != old.get("type"):
        causes.append(("type", "FieldValueInvalid",
                       f'Invalid value: "{new.get("type")}": field is immutable'))
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            causes.append(("immutable", "FieldValueForbidden", f"Forbidden: {_IMMUTABLE_SET}"))
        fields = ("data",) if res.kind == "Secret" else ("data", "binaryData")
        for field in fields:
            if (new.get(field) or {}) != (old.get(field) or {}):
                causes.append((field, "FieldValueForbidden", f"Forbidden: {_IMMUTABLE_SET}"))
    if causes:
        raise invalid(res.kind, name, causes, res.group)
