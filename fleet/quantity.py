"""Kubernetes resource quantities: parsed, and written the way the API server writes them.

A real API server does not store `cpu: "0.5"` as sent: it decodes every quantity
(`k8s.io/apimachinery/pkg/api/resource`) and writes it back in canonical form, so
`0.5` is read back as `500m`, `1024Mi` as `1Gi`, `2000m` as `2`, `1000` as `1k`, an
integer GPU count `8` as the string `"8"`. A controller that compares spellings sees
drift on every such object forever; `fleet.drift` compares these canonical forms, and
the simulated clusters store them, exactly as kube-apiserver does.

The rules (apimachinery `quantity.go`, `ParseQuantity` and `CanonicalizeBytes`):

- `<number><suffix>`, the number optionally signed and with a fraction; suffixes are
  decimal SI (`n u m "" k M G T P E`), binary SI (`Ki Mi Gi Ti Pi Ei`), or a decimal
  exponent (`e3`, `E-2`);
- the value is rounded up (away from zero) to a whole nano;
- canonical binary SI: a whole multiple of 1024 shown with the largest binary suffix
  that keeps the mantissa whole (`1536Mi`); a value under 1024 in size, or not whole,
  is shown in decimal SI instead;
- canonical decimal: the mantissa without trailing zeros, the exponent lowered to a
  multiple of 3 (`1500`, `2k`, `500m`, `1e3` stays in exponent form).
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_UP, Decimal, localcontext
from typing import Literal

Format = Literal["DecimalSI", "BinarySI", "DecimalExponent"]

PATTERN = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
FORMAT_WRONG = f"quantities must match the regular expression '{PATTERN}'"
SUFFIX_WRONG = "unable to parse quantity's suffix"
NUMERIC_WRONG = "unable to parse numeric part of quantity"

_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
            "E": 18}
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_BINARY_SUFFIX = {v: k for k, v in _BINARY.items()}
_NANO = Decimal("1e-9")
_SUFFIX_CHARS = frozenset("eEinumkKMGTP")


class QuantityError(ValueError):
    """Not a quantity; the message is the API server's own."""


@dataclass(frozen=True, slots=True)
class Quantity:
    value: Decimal
    format: Format

    def canonical(self) -> str:
        return canonical_of(self.value, self.format)


def parse(text: object) -> Quantity:
    """A quantity from its JSON form (a string, or a number as the server takes it)."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise QuantityError(FORMAT_WRONG)
    s = text if isinstance(text, str) else _number(text)
    if not s:
        raise QuantityError(FORMAT_WRONG)
    number, suffix = _split(s)
    base, exponent, fmt = _interpret(suffix)
    with localcontext() as ctx:
        ctx.prec = 200
        try:
            amount = Decimal(number)
        except ArithmeticError:
            raise QuantityError(NUMERIC_WRONG) from None
        if not amount.is_finite():
            raise QuantityError(NUMERIC_WRONG)
        amount = amount.scaleb(exponent) if base == 10 else amount * (Decimal(2) ** exponent)
        if amount != 0:
            amount = amount.quantize(_NANO, rounding=ROUND_UP)
        if fmt == "BinarySI" and 0 < abs(amount) < 1:
            fmt = "DecimalSI"
    return Quantity(amount, fmt)


def canonical(text: object) -> str:
    """The string a Kubernetes API server stores for this quantity."""
    return parse(text).canonical()


def same(a: object, b: object) -> bool:
    """Whether two spellings are one quantity as the server stores it (False when either
    is not a quantity)."""
    try:
        return canonical(a) == canonical(b)
    except QuantityError:
        return False


def canonical_of(value: Decimal, fmt: Format) -> str:
    if value == 0:
        return "0"
    with localcontext() as ctx:
        ctx.prec = 200
        if fmt == "BinarySI":
            if -1024 < value < 1024 or value != value.to_integral_value():
                fmt = "DecimalSI"
            else:
                mantissa, power = int(value), 0
                while mantissa % 1024 == 0 and power < 60:
                    mantissa //= 1024
                    power += 10
                return f"{mantissa}{_BINARY_SUFFIX[power]}"
        sign, digits, exponent = value.normalize().as_tuple()
        assert isinstance(exponent, int)
        mantissa = int("".join(map(str, digits)))
        shift = exponent % 3  # lower the exponent to a multiple of 3
        mantissa *= 10 ** shift
        exponent -= shift
        text = f"{'-' if sign else ''}{mantissa}"
        if fmt == "DecimalExponent":
            return text + (f"e{exponent}" if exponent else "")
        suffix = _DECIMAL_SUFFIX.get(exponent)
        if suffix is None:  # beyond E: the server falls back to an exponent
            return f"{text}e{exponent}"
        return text + suffix


def _number(n: int | float) -> str:
    return str(n) if isinstance(n, int) else repr(n)


def _split(s: str) -> tuple[str, str]:
    """apimachinery's `parseQuantityString`: the number and its suffix."""
    pos, end = 0, len(s)
    if s[0] in "+-":
        pos = 1
    start = pos
    while pos < end and s[pos].isdigit() and s[pos].isascii():
        pos += 1
    if pos < end and s[pos] == ".":
        pos += 1
        while pos < end and s[pos].isdigit() and s[pos].isascii():
            pos += 1
    number = s[:pos]
    digits = s[start:pos].replace(".", "")
    if not digits and pos == start:
        raise QuantityError(FORMAT_WRONG)
    if s[start:pos] == ".":
        number = s[:start] + "0"
    suffix_start = pos
    while pos < end and s[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and s[pos] in "+-":
        pos += 1
    while pos < end and s[pos].isdigit() and s[pos].isascii():
        pos += 1
    if pos != end:
        raise QuantityError(FORMAT_WRONG)
    if number.endswith("."):
        number += "0"
    if number[len(number) - len(number.lstrip("+-")):].startswith("."):
        sign = number[: len(number) - len(number.lstrip("+-"))]
        number = sign + "0" + number[len(sign):]
    return number, s[suffix_start:]


def _interpret(suffix: str) -> tuple[int, int, Format]:
    if suffix in _DECIMAL:
        return 10, _DECIMAL[suffix], "DecimalSI"
    if suffix in _BINARY:
        return 2, _BINARY[suffix], "BinarySI"
    if len(suffix) > 1 and suffix[0] in "eE":
        rest = suffix[1:]
        body = rest[1:] if rest[:1] in "+-" else rest
        if body.isdigit() and body.isascii():
            return 10, int(rest), "DecimalExponent"
    raise QuantityError(SUFFIX_WRONG)
