"""The subset of CEL device selectors the simulator evaluates (DRA, resource.k8s.io/v1).

A real API server compiles any CEL expression against the DRA environment
(k8s.io/dynamic-resource-allocation/cel: `device.driver`, `device.attributes[domain]`,
`device.capacity[domain]`, the Kubernetes quantity and semver libraries). The
simulator understands the forms aifleet renders and the NVIDIA driver's DeviceClasses
use, and refuses anything else at write time with a 422 that says so (never a silent
"matches everything"):

    device.driver == "gpu.nvidia.com"
    device.attributes["gpu.nvidia.com"].productName == "NVIDIA-H100-80GB-HBM3"
    device.attributes["gpu.nvidia.com"]["type"] != 'mig'
    device.attributes["gpu.nvidia.com"].index >= 2            (int attributes: < <= > >=)
    device.capacity["gpu.nvidia.com"].memory.compareTo(quantity("40Gi")) >= 0
    device.capacity["gpu.nvidia.com"].memory.isGreaterThan(quantity("40Gi"))
    device.capacity["gpu.nvidia.com"].memory.isLessThan(quantity("80Gi"))
    A && B, A || B, (A), true, false

As in CEL, `&&`/`||` absorb errors when the other side decides (`false && error` is
false): the NVIDIA classes rely on it (`device.driver == '...' && device.attributes[...]
.type == 'gpu'`). A missing attribute is a runtime error, and a device whose selector
ends in an error does not match (the real allocator fails the claim with
"CEL runtime error"; the simulator only skips the device).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleet.quantity import QuantityError
from fleet.quantity import parse as parse_quantity


class CelUnsupported(ValueError):
    """An expression outside the subset above (or not CEL at all)."""


class CelRuntimeError(Exception):
    pass


@dataclass(frozen=True)
class DeviceView:
    """A device as CEL sees it: attributes and capacity keyed by (domain, name)."""

    driver: str
    attributes: dict[tuple[str, str], Any] = field(default_factory=dict)
    capacity: dict[tuple[str, str], Any] = field(default_factory=dict)


def device_view(driver: str, device: dict[str, Any]) -> DeviceView:
    """Unqualified attribute and capacity names are in the driver's domain
    (resource.k8s.io/v1 `Device.attributes` doc)."""
    def key(name: str) -> tuple[str, str]:
        domain, _, short = name.rpartition("/")
        return (domain or driver, short)
    attrs: dict[tuple[str, str], Any] = {}
    for name, value in (device.get("attributes") or {}).items():
        for kind in ("string", "int", "bool", "version"):
            if isinstance(value, dict) and kind in value:
                attrs[key(name)] = value[kind]
    caps = {key(name): (c or {}).get("value")
            for name, c in (device.get("capacity") or {}).items()}
    return DeviceView(driver, attrs, caps)


Pred = Callable[[DeviceView], bool]
_Q = r"""(?:"([^"\\]*)"|'([^'\\]*)')"""
_ACCESS = re.compile(
    r"device\.(?:(driver)|(attributes|capacity)\[" + _Q +
    r"\](?:\.([A-Za-z_][A-Za-z0-9_]*)|\[" + _Q + r"\]))")
_LITERAL = re.compile(r"""^(?:"([^"\\]*)"|'([^'\\]*)'|(-?\d+)|(true|false))$""")
_OPS = ("==", "!=", "<=", ">=", "<", ">")
_QUANTITY_CALL = re.compile(
    r"^\.(compareTo|isGreaterThan|isLessThan)\(quantity\(" + _Q + r"\)\)(.*)$")


def compile_selector(expression: str) -> Pred:
    """A predicate for the expression, or CelUnsupported naming what is not understood."""
    text = expression.strip()
    if not text:
        raise CelUnsupported("empty expression")
    return _or(text)


def matches(pred: Pred, device: DeviceView) -> bool:
    try:
        return pred(device)
    except CelRuntimeError:
        return False


def _split(text: str, op: str) -> list[str]:
    parts, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(text):
        ch = text[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0 and text.startswith(op, i):
            parts.append(text[start:i].strip())
            start = i + len(op)
            i += len(op)
            continue
        i += 1
    parts.append(text[start:].strip())
    return parts


def _or(text: str) -> Pred:
    parts = [_and(p) for p in _split(text, "||")]
    if len(parts) == 1:
        return parts[0]

    def pred(d: DeviceView) -> bool:
        err = None
        for p in parts:
            try:
                if p(d):
                    return True
            except CelRuntimeError as e:
                err = e
        if err is not None:
            raise err
        return False
    return pred


def _and(text: str) -> Pred:
    parts = [_atom(p) for p in _split(text, "&&")]
    if len(parts) == 1:
        return parts[0]

    def pred(d: DeviceView) -> bool:
        err = None
        for p in parts:
            try:
                if not p(d):
                    return False
            except CelRuntimeError as e:
                err = e
        if err is not None:
            raise err
        return True
    return pred


def _balanced(text: str) -> bool:
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and i < len(text) - 1:
            return False
    return True


def _atom(text: str) -> Pred:
    if not text:
        raise CelUnsupported("missing operand")
    if text.startswith("(") and text.endswith(")") and _balanced(text):
        return _or(text[1:-1].strip())
    if text in ("true", "false"):
        value = text == "true"
        return lambda d: value
    m = _ACCESS.match(text)
    if m is None:
        raise CelUnsupported(f"{text!r} is not a device field this simulator evaluates")
    getter, is_capacity = _getter(m)
    rest = text[m.end():].strip()
    if is_capacity:
        return _quantity_compare(getter, rest, text)
    for op in _OPS:
        if rest.startswith(op):
            literal = _literal(rest[len(op):].strip(), text)
            return _compare(getter, op, literal, text)
    raise CelUnsupported(f"{text!r}: expected a comparison (==, !=, <, <=, >, >=)")


def _getter(m: re.Match[str]) -> tuple[Callable[[DeviceView], Any], bool]:
    if m.group(1):
        return (lambda d: d.driver), False
    table, domain = m.group(2), m.group(3) if m.group(3) is not None else m.group(4)
    name = m.group(5) or (m.group(6) if m.group(6) is not None else m.group(7))
    key = (domain, name)

    def get(d: DeviceView) -> Any:
        values = d.attributes if table == "attributes" else d.capacity
        if key not in values:
            raise CelRuntimeError(f"no such key: {name}")
        return values[key]
    return get, table == "capacity"


def _literal(text: str, whole: str) -> Any:
    m = _LITERAL.match(text)
    if m is None:
        raise CelUnsupported(f"{whole!r}: the right-hand side must be a string, integer "
                             "or boolean literal")
    if m.group(1) is not None or m.group(2) is not None:
        return m.group(1) if m.group(1) is not None else m.group(2)
    if m.group(3) is not None:
        return int(m.group(3))
    return m.group(4) == "true"


def _compare(get: Callable[[DeviceView], Any], op: str, literal: Any, whole: str) -> Pred:
    if op not in ("==", "!=") and not isinstance(literal, int):
        raise CelUnsupported(f"{whole!r}: ordering applies to integers only here")

    def pred(d: DeviceView) -> bool:
        value = get(d)
        if type(value) is not type(literal):
            raise CelRuntimeError("no such overload")
        return bool({"==": value == literal, "!=": value != literal,
                     "<": value < literal, "<=": value <= literal,
                     ">": value > literal, ">=": value >= literal}[op])
    return pred


def _quantity_compare(get: Callable[[DeviceView], Any], rest: str, whole: str) -> Pred:
    m = _QUANTITY_CALL.match(rest)
    if m is None:
        raise CelUnsupported(f"{whole!r}: compare capacity with .compareTo(quantity(\"...\")), "
                             ".isGreaterThan(quantity(...)) or .isLessThan(quantity(...))")
    method, q = m.group(1), m.group(2) if m.group(2) is not None else m.group(3)
    try:
        bound = parse_quantity(q).value
    except QuantityError as e:
        raise CelUnsupported(f"{whole!r}: {e}") from None
    tail = m.group(4).strip()
    if method != "compareTo":
        if tail:
            raise CelUnsupported(f"{whole!r}: unexpected {tail!r}")
        return lambda d: (_q(get(d)) > bound) if method == "isGreaterThan" \
            else (_q(get(d)) < bound)
    op = next((o for o in _OPS if tail.startswith(o)), None)
    if op is None:
        raise CelUnsupported(f"{whole!r}: compareTo(...) must be compared with an integer")
    target = _literal(tail[len(op):].strip(), whole)
    if not isinstance(target, int) or isinstance(target, bool):
        raise CelUnsupported(f"{whole!r}: compareTo(...) must be compared with an integer")

    def pred(d: DeviceView) -> bool:
        c = _q(get(d))
        sign = (c > bound) - (c < bound)
        return bool({"==": sign == target, "!=": sign != target, "<": sign < target,
                     "<=": sign <= target, ">": sign > target, ">=": sign >= target}[op])
    return pred


def _q(value: Any) -> Any:
    try:
        return parse_quantity(str(value)).value
    except QuantityError:
        raise CelRuntimeError("not a quantity") from None
