"""Safe, bounded YAML reading with a line number for every field.

Fleet repos are written by many teams, so a YAML file is untrusted input. PyYAML's
composer is recursive (the C one segfaults on a few tens of thousands of nested `[`) and
expands aliases without limit, and its loaders silently keep the last of two duplicate
keys. So we drive the C *event* parser (iterative, no recursion) ourselves and build
plain Python values from the events, with:

- a nesting limit (`MAX_DEPTH`), checked before anything deep is built;
- an alias budget: each alias adds the size of what it points at to the document's
  expanded node count, refused past `MAX_NODES` (a "billion laughs" costs only as much
  work as its text, because aliased values are shared, never copied);
- a document limit per file (`MAX_DOCUMENTS`);
- duplicate keys as errors, naming the line of the first one;
- a map from each field's path (`("spec", "resources", "gpu", "count")`) to its line,
  so a schema error points at the line of the field, not of the document.

Scalars resolve exactly as `yaml.safe_load` does (same resolver and constructors).

Most fleet files are plain block YAML; `workloads.yamlfast` reads those line by line,
without libyaml's event objects, and hands anything else (and every error) to this reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.resolver import Resolver

try:
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

MAX_FILE_BYTES = 1024 * 1024
MAX_DOCUMENTS = 10_000
MAX_DEPTH = 64
MAX_NODES = 100_000

Path = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlError(Exception):
    """A document or file that cannot be read; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(slots=True)
class YamlDocument:
    """One document: its value, the line it starts on, and the line of each field."""

    value: Any
    line: int
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int:
        """The line of the deepest known field on `path` (a missing field: its parent)."""
        p = tuple(path)
        while p:
            found = self.lines.get(p)
            if found is not None:
                return found
            p = p[:-1]
        return self.line


@dataclass(slots=True)
class YamlFile:
    documents: list[YamlDocument]
    errors: list[YamlError]


class _Frame:
    """A collection under construction."""

    __slots__ = ("anchor", "is_map", "key", "merges", "path", "pending_key", "size", "value")

    def __init__(self, is_map: bool, path: Path, anchor: str | None) -> None:
        self.is_map = is_map
        self.value: Any = {} if is_map else []
        self.path = path
        self.anchor = anchor
        self.size = 1
        self.pending_key: Any = _NO_KEY if is_map else _IN_LIST
        self.key: dict[Any, int] = {}  # key -> line, for duplicate detection
        self.merges: list[Any] = []

    def take_key(self, key: Any, line: int) -> None:
        """A mapping's next key; a second one equal to an earlier one is an error."""
        self.pending_key = key
        if key in self.key and key != _MERGE_TAG:
            raise YamlError(f"duplicate key {key!r} (first at line {self.key[key]})", line)
        self.key[key] = line

    def take_value(self, value: Any) -> None:
        """The value of the pending key (`<<`: a mapping to merge in at the end)."""
        key = self.pending_key
        self.pending_key = _NO_KEY
        if key == _MERGE_TAG:
            self.merges.append(value)
        else:
            self.value[key] = value


_NO_KEY = object()
_IN_LIST = object()
"""The pending key of a list: never `_NO_KEY`, so `pending_key is _NO_KEY` alone says
"a mapping waits for a key"."""

_plain_cache: dict[str, Any] = {}
"""Resolved values of plain, untagged scalars by text (the resolver's answer is a pure
function of the text for those). Only immutable values are cached."""
IMMUTABLE_SCALARS = (str, bool, int, float, type(None))
_FIRST = frozenset(Resolver.yaml_implicit_resolvers)
"""First characters of plain scalars that are not simply strings (numbers, bools, null,
timestamps, `<<`, `=`): those go through the resolver."""
_RESOLVER: Any = Resolver()
_CONSTRUCTOR: Any = SafeConstructor()


def plain_scalar(text: str) -> Any:
    """An untagged plain scalar's value, exactly as `yaml.safe_load` makes it (PyYAML's
    resolver and safe constructors); `yaml.constructor.ConstructorError` for a tag it
    cannot construct (`=`, or `<<` outside a key) and for a value its tag cannot hold,
    where `safe_load` raises whatever the constructor raised (`2025-02-30` resolves to
    a timestamp that is no date; an int over Python's 4,300-digit limit). Both readers
    resolve through here."""
    if text and text[0] not in _FIRST:
        return text  # no implicit resolver starts with this character: a str
    value = _plain_cache.get(text, _plain_cache)
    if value is not _plain_cache:
        return value
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))
    construct = _CONSTRUCTOR.yaml_constructors.get(tag)
    if construct is None:
        raise ConstructorError(None, None,
                               f"could not determine a constructor for the tag {tag!r}")
    try:
        value = construct(_CONSTRUCTOR, yaml.ScalarNode(tag, text))
    except CONSTRUCT_ERRORS as e:
        raise ConstructorError(None, None, scalar_problem(tag, text, e)) from None
    if len(text) <= 64 and len(_plain_cache) < 4096 and isinstance(value, IMMUTABLE_SCALARS):
        _plain_cache[text] = value  # plain scalars repeat (`8`, `1`, `true`): resolve once
    return value


CONSTRUCT_ERRORS = (ValueError, OverflowError, TypeError, AttributeError, LookupError)
"""What PyYAML's safe scalar constructors raise on a value their tag cannot hold (an
explicit `!!timestamp x` fails inside the constructor with an AttributeError)."""


def scalar_problem(tag: str, text: str, error: Exception) -> str:
    """Why a scalar cannot be read as its tag, in words for the file's author. The text
    is shown cut short: it may be 4,301 digits long."""
    shown = repr(text if len(text) <= 40 else f"{text[:37]}...")
    name = tag.rsplit(":", 1)[-1]
    if name == "int" and "digits" in str(error):
        return (f"{shown} is an integer of more than 4300 digits, too long to read; "
                "quote it to keep it a string")
    if name == "timestamp" and isinstance(error, ValueError):
        return (f"{shown} reads as a YAML date but is not a valid one ({error}); "
                "quote it to keep it a string")
    why = f" ({str(error)[:80]})" if isinstance(error, ValueError) else ""
    return f"{shown} cannot be read as a YAML {name}{why}"


def _line(event: Any) -> int:
    return int(event.start_mark.line) + 1


def read_yaml(data: bytes) -> YamlFile:
    """Every document of a file; errors do not lose the documents before them."""
    if len(data) > MAX_FILE_BYTES:
        return YamlFile([], [YamlError(f"file is {len(data)} bytes, over the 1 MiB limit", None)])
    from workloads.yamlfast import read_simple  # imports this module: not at the top

    simple = read_simple(data)
    if simple is not None:  # the plain shape most files have, read ~3x faster
        return YamlFile(simple, [])
    return read_yaml_events(data)


def read_yaml_events(data: bytes) -> YamlFile:
    """`read_yaml` by libyaml's events alone: any YAML, and every error."""
    if len(data) > MAX_FILE_BYTES:
        return YamlFile([], [YamlError(f"file is {len(data)} bytes, over the 1 MiB limit", None)])
    docs: list[YamlDocument] = []
    errors: list[YamlError] = []
    loader = _Loader(data)
    try:
        for doc in _documents(loader):
            if len(docs) >= MAX_DOCUMENTS:
                # Refuse the whole file: half of it loaded would be a silent surprise.
                return YamlFile([], [YamlError(
                    f"more than {MAX_DOCUMENTS} documents in one file: the file is refused",
                    doc.line,
                )])
            if doc.value is not None:
                docs.append(doc)
    except YamlError as e:
        errors.append(e)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = int(mark.line) + 1 if mark is not None else None
        what = " ".join(p for p in (e.context, e.problem) if p)
        if "maximum nesting depth" in what:
            # libyaml >= 0.2.5 scans a flow collection's opening brackets ahead of the
            # events that would reach our limit, and stops at its own: the same refusal
            errors.append(YamlError(f"nested deeper than {MAX_DEPTH} levels", line))
        else:
            errors.append(YamlError(f"invalid YAML: {what}", line))
    except yaml.reader.ReaderError as e:  # bytes that are not text: no mark, a position
        line = data[:e.position].count(b"\n") + 1 if isinstance(e.position, int) else None
        errors.append(YamlError(f"invalid YAML: {e.reason} (the file must be UTF-8 text "
                                "without control characters)", line))
    except yaml.YAMLError as e:
        errors.append(YamlError(f"invalid YAML: {e}", None))
    finally:
        loader.dispose()
    return YamlFile(docs, errors)


def _documents(loader: Any) -> Iterator[YamlDocument]:
    loader.get_event()  # StreamStart
    while not loader.check_event(yaml.StreamEndEvent):
        start = loader.get_event()  # DocumentStart
        doc = YamlDocument(value=None, line=_line(start))
        _build(loader, doc)
        loader.get_event()  # DocumentEnd
        yield doc


def _build(loader: Any, doc: YamlDocument) -> None:
    """Build the value of one document from events, iteratively.

    This loop is the hot path of reading a repo (every scalar of every file passes
    through it, ~100,000 events a second), so it dispatches on the exact event type,
    keeps the collection under construction in a local (`top`), reads an event's line
    only where it is recorded (keys, list items, errors) and attaches a scalar inline.
    """
    anchors: dict[str, tuple[Any, int]] = {}
    get_event = loader.get_event
    lines = doc.lines
    stack: list[_Frame] = []
    top: _Frame | None = None
    total = 0
    no_key = _NO_KEY
    scalar_t, alias_t = yaml.ScalarEvent, yaml.AliasEvent
    map_t, seq_t = yaml.MappingStartEvent, yaml.SequenceStartEvent
    ends = (yaml.SequenceEndEvent, yaml.MappingEndEvent)

    while True:
        event = get_event()
        etype = type(event)
        if etype is scalar_t:
            # A sequence's pending_key is never `no_key`: this is "a mapping wants a key".
            is_key = top is not None and top.pending_key is no_key
            text = event.value
            tag, style = event.tag, event.style
            # The C parser reports a plain scalar's style as '' (the Python one as None).
            if tag is None and style:
                value: Any = text  # quoted: a str
            elif tag is None:
                if is_key and text == "<<":
                    value = _MERGE_TAG
                else:
                    try:
                        value = plain_scalar(text)
                    except ConstructorError as e:
                        raise YamlError(f"invalid YAML: {e.problem}", _line(event)) from None
            else:  # an explicit tag (`!!str 5`), as safe_load's composer resolves it
                value = _tagged(loader, event, is_key)
            total += 1
            if event.anchor:
                anchors[event.anchor] = (value, 1)
            if top is None:
                doc.value = value
                return
            top.size += 1
            if is_key:
                line = event.start_mark.line + 1
                # `type(...) is str` first: the common case, cheaper than the isinstance
                lines[(*top.path, value if type(value) is str or isinstance(value, str | int)
                       else str(value))] = line
                top.take_key(value, line)
            elif top.is_map:
                top.take_value(value)
            else:
                lines[(*top.path, len(top.value))] = event.start_mark.line + 1
                top.value.append(value)
            continue

        line = event.start_mark.line + 1
        if etype is map_t or etype is seq_t:
            if len(stack) >= MAX_DEPTH:
                raise YamlError(f"nested deeper than {MAX_DEPTH} levels", line)
            path: Path = ()
            if top is not None:
                if top.is_map:
                    k = top.pending_key
                    if k is no_key:
                        raise YamlError(
                            "a mapping key must be a plain value, not a list or mapping", line
                        )
                    path = (*top.path, k if isinstance(k, str | int) else str(k))
                else:
                    path = (*top.path, len(top.value))
                    lines[path] = line  # a list item: the line it starts on
            total += 1
            if total > MAX_NODES:
                raise YamlError(f"document has more than {MAX_NODES} nodes", line)
            top = _Frame(etype is map_t, path, event.anchor)
            stack.append(top)
            continue
        if etype in ends:
            frame = stack.pop()
            top = stack[-1] if stack else None
            if frame.is_map and frame.merges:
                _apply_merges(frame, line)
            if frame.anchor:
                anchors[frame.anchor] = (frame.value, frame.size)
            value, size, key_candidate = frame.value, frame.size, False
        elif etype is alias_t:
            if event.anchor not in anchors:
                raise YamlError(
                    f"alias *{event.anchor} refers to no anchor defined before it "
                    "(or to one that contains it)",
                    line,
                )
            value, size = anchors[event.anchor]
            total += size
            if total > MAX_NODES:
                raise YamlError(
                    f"aliases expand the document past {MAX_NODES} nodes "
                    "(a YAML alias bomb?)",
                    line,
                )
            key_candidate = top is not None and top.pending_key is no_key \
                and not isinstance(value, dict | list)
            if top is not None and not top.is_map:
                lines[(*top.path, len(top.value))] = line
        else:  # pragma: no cover - the parser emits nothing else inside a document
            raise YamlError(f"unexpected YAML event {etype.__name__}", line)

        # Attach a collection or an alias to the collection under construction (or make
        # it the root).
        if top is None:
            doc.value = value
            return
        top.size += size
        if not top.is_map:
            top.value.append(value)
        elif top.pending_key is no_key:
            if not key_candidate:
                raise YamlError("a mapping key must be a plain value, not a list or mapping",
                                line)
            top.take_key(value, line)
        else:
            top.take_value(value)


def _tagged(loader: Any, event: Any, is_key: bool) -> Any:
    """An explicitly tagged scalar (`!!int 5`, `!!timestamp ...`), as `safe_load` makes
    it; what it cannot make (an unknown tag, a value the tag cannot hold) is an error at
    the scalar's line, not an exception out of the reader."""
    text, tag = event.value, event.tag
    node = yaml.ScalarNode(
        tag if tag != "!" else loader.resolve(yaml.ScalarNode, text, event.implicit),
        text, style=event.style)
    if is_key and node.tag == _MERGE_TAG:
        return _MERGE_TAG
    try:
        return loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as e:
        raise YamlError(f"invalid YAML: {e.problem}", _line(event)) from None
    except CONSTRUCT_ERRORS as e:
        raise YamlError(f"invalid YAML: {scalar_problem(node.tag, text, e)}",
                        _line(event)) from None


def _apply_merges(frame: _Frame, line: int) -> None:
    """`<<: *base` (or a list of them): keys not set in the mapping itself come from base."""
    sources: list[Any] = []
    for m in frame.merges:
        sources.extend(m if isinstance(m, list) else [m])
    for src in sources:
        if not isinstance(src, dict):
            raise YamlError("a merge key `<<` needs a mapping or a list of mappings", line)
        for k, v in src.items():
            frame.value.setdefault(k, v)
