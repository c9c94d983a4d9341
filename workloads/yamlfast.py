"""A fast path for the plain YAML nearly every fleet file is written in.

`workloads.yamlio` drives libyaml's event parser; most of its cost is the Python event
object libyaml makes for every scalar (most of a cold `fleet plan` on a big repo).
Fleet files are almost always the same shape: block mappings and lists of plain,
single-line scalars, small one-line `[a, b]` and
`{k: v}` collections, comments and `---`. `read_simple` reads exactly that shape, line
by line, without those objects, and returns None for anything else: the caller then
reads the file with the full reader, which also reports every error. So the fast path
never has to be right about a file it is unsure of; it only has to decline.

It declines on: any byte outside printable ASCII (tabs, CR, control characters,
UTF-8 text, a BOM), directives, `...`, anchors, aliases, tags, block scalars,
quoted strings with escapes, multi-line scalars and flow collections, nested flow
collections, non-string keys, merge keys, duplicate keys, scalars that resolve to a
timestamp or a tag other than str/int/float/bool/null, a root that is not a mapping
at column 0, and anything deeper or bigger than the full reader's limits allow.

What it accepts, it reads exactly as the full reader does: the same values (scalars
resolved by PyYAML's own resolver and constructors), the same document lines and the
same line for every field. `tests/unit/workloads/test_yamlfast.py` checks that against
the full reader on generated and mutated documents.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from workloads.yamlio import (
    IMMUTABLE_SCALARS,
    MAX_DEPTH,
    MAX_DOCUMENTS,
    YamlDocument,
    plain_scalar,
)

MAX_BYTES = 64 * 1024
"""Bigger files go to the full reader: this small, a file cannot reach the full reader's
node limit (`MAX_NODES`), so the fast path need not count."""

_OUTSIDE = re.compile(rb"[^\x20-\x7e\n]")
"""A byte the fast path does not read: tab, CR, control characters, non-ASCII."""

_LINE = re.compile(
    r"^( *)(?:(-)( +|$))?"  # indent; the `-` of a list item and the spaces after it
    r"(?:([A-Za-z_][A-Za-z0-9_./-]*):(?: +|$))?"  # a mapping key
    # a value that is one simple word (most are), with a comment or not; or the rest
    r"(?:([A-Za-z0-9_./](?:[A-Za-z0-9_./:-]*[A-Za-z0-9_./-])?) *(?: #.*)?|(.*?)) *$",
    re.M)
"""Every line: indent, `-`, spaces after it, key, a simple value, or the rest (each ''
when absent)."""

_FLOW_WORD = re.compile(r"(?:[^-?:,\[\]{}#&*!|>'\"%@` ]|-[^ :,\[\]{}#])[^:,\[\]{}#]*(?<! )")
"""A plain scalar in a flow collection, as this reads them: no `:`, `#` or flow
indicator in it, no indicator first (`-` only before a non-space), no trailing space."""
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")


class _Decline(Exception):
    """Not the simple shape: read the file with the full reader."""


_DECLINE = _Decline()


def _plain(text: str) -> Any:
    """A plain scalar's value, as the full reader resolves it (`yamlio.plain_scalar`);
    anything but a str, number, bool or null (a timestamp, `=`) is declined."""
    try:
        value = plain_scalar(text)
    except yaml.YAMLError:
        raise _DECLINE from None
    if not isinstance(value, IMMUTABLE_SCALARS):
        raise _DECLINE
    return value


def _quoted(s: str, i: int) -> tuple[str, int]:
    """A quoted scalar without escapes at `s[i]`, and the index after it."""
    q = s[i]
    end = s.find(q, i + 1)
    if end < 0 or (q == '"' and "\\" in s[i:end]) or s[end + 1:end + 2] == "'" == q:
        raise _DECLINE  # unterminated, an escape, or `''` (a quote in single quotes)
    return s[i + 1:end], end + 1


def _flow_scalar(s: str, i: int) -> tuple[Any, int]:
    """A quoted or plain scalar inside a flow collection, at `s[i]`, and the index after."""
    if s[i:i + 1] in ('"', "'"):
        return _quoted(s, i)
    m = _FLOW_WORD.match(s, i)
    if m is None:
        raise _DECLINE
    return _plain(m.group()), m.end()


def _flow(s: str, i: int, path: tuple[Any, ...], lines: dict[Any, int], line: int,
          depth: int) -> tuple[Any, int]:
    """A flow collection that starts and ends on this line, at `s[i]`, and the index
    after it. Plain scalars in it hold no `:` or `#` (else the full reader reads it)."""
    if depth >= MAX_DEPTH - 2:
        raise _DECLINE
    is_map = s[i] == "{"
    close = "}" if is_map else "]"
    out: Any = {} if is_map else []
    i += 1
    n = len(s)
    while True:
        while i < n and s[i] == " ":
            i += 1
        if i >= n:
            raise _DECLINE  # continues on the next line
        if s[i] == close and not out:
            return out, i + 1
        if is_map:
            key, i = _flow_scalar(s, i)
            if type(key) is not str or key in out or s[i:i + 2] != ": ":
                raise _DECLINE
            at = (*path, key)
            lines[at] = line
            i += 2
            while i < n and s[i] == " ":
                i += 1
        else:
            at = (*path, len(out))
            lines[at] = line
        if s[i:i + 1] in ("[", "{"):
            value, i = _flow(s, i, at, lines, line, depth + 1)
        else:
            value, i = _flow_scalar(s, i)
        if is_map:
            out[key] = value
        else:
            out.append(value)
        while i < n and s[i] == " ":
            i += 1
        if i < n and s[i] == ",":
            i += 1
            while i < n and s[i] == " ":
                i += 1
            if i < n and s[i] == close:
                raise _DECLINE  # a trailing comma
        elif i < n and s[i] == close:
            return out, i + 1
        else:
            raise _DECLINE


def _value(rest: str, path: tuple[Any, ...], lines: dict[Any, int], line: int) -> Any:
    """A value that fits on its line: a scalar or a one-line flow collection, with a
    comment after it or not."""
    c = rest[0]
    if c == "[" or c == "{":
        value, end = _flow(rest, 0, path, lines, line, len(path))
    elif c == '"' or c == "'":
        value, end = _quoted(rest, 0)
    else:
        if c in _INDICATORS and not (c == "-" and len(rest) > 1 and rest[1] != " "):
            raise _DECLINE
        cut = rest.find(" #")
        if cut >= 0:
            rest = rest[:cut].rstrip(" ")
        if ": " in rest or rest[-1] == ":":
            raise _DECLINE
        return _plain(rest)
    tail = rest[end:]
    if tail and (tail[0] != " " or tail.lstrip(" ")[:1] != "#"):
        raise _DECLINE  # something after the value that is not a comment
    return value


class _Frame:
    __slots__ = ("indent", "is_map", "path", "value")

    def __init__(self, indent: int, value: Any, path: tuple[Any, ...]) -> None:
        self.indent = indent
        self.value = value
        self.is_map = type(value) is dict
        self.path = path


def read_simple(data: bytes) -> list[YamlDocument] | None:
    """The documents of `data` (empty ones left out, as `read_yaml` does), or None when
    it is not the simple shape this reads."""
    if len(data) > MAX_BYTES or _OUTSIDE.search(data) is not None:
        return None
    try:
        return _read(data.decode("ascii"))
    except (_Decline, RecursionError):
        return None


def _read(text: str) -> list[YamlDocument]:
    docs: list[YamlDocument] = []
    doc: YamlDocument | None = None
    stack: list[_Frame] = []
    top: _Frame | None = None  # stack[-1]
    lines: dict[Any, int] = {}
    pending: tuple[_Frame, str] | None = None  # a `key:` waiting for its value
    explicit = 0  # the line of a `---` whose document has no content yet

    for n, (ind_s, dash, after_dash, key, simple, rest) in enumerate(_LINE.findall(text), 1):
        if not dash and not key:
            if not simple and (not rest or rest[0] == "#"):
                continue  # a blank or comment line
            if not ind_s and (rest == "---" or rest[:5] == "--- #"):
                if pending is not None:
                    pending[0].value[pending[1]] = None
                    pending = None
                if doc is not None:
                    docs.append(doc)
                doc, top, explicit = None, None, n
                continue
            raise _DECLINE  # a root scalar, a multi-line scalar, `...`, a directive
        ind = len(ind_s)
        if top is None:
            if dash or ind or len(docs) >= MAX_DOCUMENTS:
                raise _DECLINE  # only a mapping at column 0 as the root
            lines = {}
            doc = YamlDocument({}, explicit or n, lines)
            explicit = 0
            top = _Frame(0, doc.value, ())
            stack = [top]

        if pending is not None:
            parent, pkey = pending
            pending = None
            if dash and ind >= parent.indent:
                top = _Frame(ind, [], (*parent.path, pkey))
            elif not dash and ind > parent.indent:
                top = _Frame(ind, {}, (*parent.path, pkey))
            else:
                parent.value[pkey] = None
            if top is not parent:
                if len(stack) >= MAX_DEPTH - 2:
                    raise _DECLINE
                parent.value[pkey] = top.value
                stack.append(top)

        if top.indent != ind:
            while top.indent > ind:
                stack.pop()
                top = stack[-1]
            if top.indent != ind:
                raise _DECLINE
        if dash:
            if top.is_map:
                raise _DECLINE
            items = top.value
            at = (*top.path, len(items))
            lines[at] = n
            if not key:
                if simple:
                    items.append(_plain(simple))
                elif not rest or rest[0] == "#" or rest[:2] == "- " or rest == "-":
                    raise _DECLINE  # `-` alone, or a list in a list
                else:
                    items.append(_value(rest, at, lines, n))
                continue
            if len(stack) >= MAX_DEPTH - 2:
                raise _DECLINE
            top = _Frame(ind + 1 + len(after_dash), {}, at)
            items.append(top.value)
            stack.append(top)
        elif not top.is_map:
            # A list at the same indent as its key ends where the mapping goes on.
            stack.pop()
            top = stack[-1] if stack else None
            if top is None or top.indent != ind or not top.is_map:
                raise _DECLINE

        # `key: value` in the mapping `top`
        k = _plain(key)
        mapping = top.value
        if type(k) is not str or k in mapping:
            raise _DECLINE  # a duplicate key: the full reader says where the first one is
        kpath = (*top.path, k)
        lines[kpath] = n
        if simple:
            mapping[k] = _plain(simple)
        elif rest and rest[0] != "#":
            mapping[k] = _value(rest, kpath, lines, n)
        else:
            mapping[k] = None
            pending = (top, k)

    if pending is not None:
        pending[0].value[pending[1]] = None
    if doc is not None:
        docs.append(doc)
    return docs
