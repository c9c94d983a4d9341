"""One object for equal values across the parsed documents of a fleet repo.

At 1,000 clusters x 50,000 workloads the parsed spec was most of a replica's memory
(issue 22): every workload held its own copy of values that thousands of workloads
spell the same way (a `resources.gpu` of one H100, a `placement` of `dataClass:
public`, the same labels, tolerations, env, the field-name strings) and a set of
set-field names per model. `Sharer.share` walks a freshly parsed value bottom-up and
returns it with each equal sub-value replaced by the first one seen: a frozen model,
a tuple, a dict, a string, an int. Where the bytes went, and the figures, are in
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


class Sharer:
    """A table of canonical values; `share` returns a value with its parts replaced by
    the canonical equal ones (adding the new ones). Not thread-safe."""

    __slots__ = ("_fields_sets", "_ints", "_table")

    def __init__(self) -> None:
        self._table: dict[_Key, Any] = {}
        self._ints: dict[int, int] = {}
        self._fields_sets: dict[frozenset[str], set[str]] = {}

    def __len__(self) -> int:
        return len(self._table) + len(self._ints) + len(self._fields_sets)

    def share(self, value: T) -> T:
        """`value` with every equal part made one object. A model whose class says
        `shared_whole = False` is updated in place (its fields set to the shared values):
        pass only what was just parsed, never an object someone else holds."""
        out: T = self._share(value)
        return out

    def _share(self, v: Any) -> Any:
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
        for k, x in fields.items():
            shared = self._share(x)
            if shared is not x:
                fields[k] = shared  # a fresh parse result: nobody else holds it yet
        fs = m.__pydantic_fields_set__
        canonical = self._fields_sets.setdefault(frozenset(fs), fs)
        if canonical is not fs:
            object.__setattr__(m, "__pydantic_fields_set__", canonical)
        if not getattr(m, "shared_whole", True):
            return m
        return self._intern((type(m), id(canonical), *map(id, fields.values())), m)

    def _intern(self, key: _Key, value: Any) -> Any:
        return self._table.setdefault(key, value)
