"""One object for equal values across the parsed documents of a fleet repo.

At 1,000 clusters x 50,000 workloads the parsed spec was most of a replica's memory
(issue 22): every workload held its own copy of values that thousands of workloads
spell the same way (a `resources.gpu` of one H100, a `placement` of `dataClass:
public`, the same labels, tolerations, env, the field-name strings) and a set of
set-field names per model. `Sharer.share` walks a parsed value bottom-up and returns
an equal one whose parts are the first equal ones seen: a frozen model, a tuple, a
dict, a string, an int. It writes nothing: where a part is replaced, the model or
container holding it is a new one. Where the bytes went, and the figures, are in
docs/controller.md ("Memory of the parsed spec") and `python -m bench.specmem`.

Sharing is safe only because nothing writes to what is shared: the models are frozen
and their dict fields are read, never written (the render copies before it changes
anything; tests/unit/workloads/test_sharing.py runs plan and render over a shared
spec and checks every workload still dumps as it did). Lists are left unshared.

Two values are one only when they are equal *and* of the same type field for field
(a model's set-field names too, which `exclude_unset` dumps read): the key of a
container is its type and the identities of its (already shared) members, so equal
keys mean equal values, and `True` never stands in for `1`. A model class with
`shared_whole = False` (a document, its metadata: a name makes each one unique) has its
members shared but is never itself a table entry, so the table grows with the
distinct values, not with the documents.
"""

from __future__ import annotations

import sys
from typing import Any, TypeVar

from pydantic import BaseModel

T = TypeVar("T")

_Key = tuple[Any, ...]
_Paths = tuple[tuple[str | int, ...], ...]


class Sharer:
    """A table of canonical values; `share` returns a value with its parts replaced by
    the canonical equal ones (adding the new ones). Not thread-safe."""

    __slots__ = ("_fields_sets", "_ints", "_paths", "_table")

    def __init__(self) -> None:
        self._table: dict[_Key, Any] = {}
        self._ints: dict[int, int] = {}
        self._fields_sets: dict[frozenset[str], set[str]] = {}
        self._paths: dict[_Paths, _Paths] = {}

    def __len__(self) -> int:
        return len(self._table) + len(self._ints) + len(self._fields_sets) + len(self._paths)

    def share_paths(self, paths: _Paths) -> _Paths:
        """The first tuple of field paths seen equal to `paths` (`FieldLines`): looked up
        by value in one step, as a path holds only keys and list indices (equal paths
        look a line up alike)."""
        return self._paths.setdefault(paths, paths)

    def share(self, value: T) -> T:
        """`value` with every equal part made one object. Nothing is written: a model
        or container with a part replaced is a new one (`value` may be held elsewhere)."""
        out: T = self._share(value)
        return out

    def _share(self, v: Any) -> Any:
        if v is None:
            return v
        t = type(v)
        if t is str:
            return sys.intern(v)
        if t is int:
            return self._ints.setdefault(v, v)
        if t is tuple:
            items = tuple(self._share(x) for x in v)
            return self._intern((tuple, *map(id, items)), items)
        if t is dict:
            d = {self._share(k): self._share(x) for k, x in v.items()}
            key: list[Any] = [dict]
            for k, x in d.items():
                key += (id(k), id(x))
            return self._intern(tuple(key), d)
        if isinstance(v, BaseModel):
            return self._share_model(v)
        return v  # None, bool, float, a list: as it is (a key holds it by identity)

    def _share_model(self, m: BaseModel) -> Any:
        fields = m.__dict__
        shared = {k: self._share(x) for k, x in fields.items()}
        fs = m.__pydantic_fields_set__
        canonical = self._fields_sets.setdefault(frozenset(fs), fs)
        if canonical is not fs or any(shared[k] is not x for k, x in fields.items()):
            m = _with(m, shared, canonical)  # a copy: `m` itself is never written
        else:
            shared = fields
        if not getattr(m, "shared_whole", True):
            return m
        return self._intern((type(m), id(canonical), *map(id, shared.values())), m)

    def _intern(self, key: _Key, value: Any) -> Any:
        return self._table.setdefault(key, value)


def _with(m: BaseModel, fields: dict[str, Any], fields_set: set[str]) -> BaseModel:
    """A copy of `m` holding `fields` (equal to its own) and `fields_set`."""
    out = object.__new__(type(m))  # as pydantic's own copy makes one, sharing the parts
    object.__setattr__(out, "__dict__", fields)
    object.__setattr__(out, "__pydantic_fields_set__", fields_set)
    object.__setattr__(out, "__pydantic_extra__", m.__pydantic_extra__)
    object.__setattr__(out, "__pydantic_private__", m.__pydantic_private__)
    return out
