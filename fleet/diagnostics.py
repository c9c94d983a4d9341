"""Diagnostics: what is wrong with the fleet repo, and exactly where.

A diagnostic is data, not an exception: bad input is reported and the rest of the repo
keeps working. `file` is the path a person would open (relative to the Git repository
root), `line` is 1-based. Its JSON form is the `errors[]` item of plan.schema.json.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, order=True)
class Diagnostic:
    file: str
    line: int | None
    message: str
    kind: str | None = None
    """The document kind concerned, when known (extra field in JSON)."""
    name: str | None = None
    """The document's name or workload id, when known (extra field in JSON)."""

    def format(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "line": self.line, "message": self.message}
        if self.kind is not None:
            out["kind"] = self.kind
        if self.name is not None:
            out["name"] = self.name
        return out


def sort_key(d: Diagnostic) -> tuple[str, int, str]:
    return (d.file, d.line or 0, d.message)


class FieldLines(Mapping[Path, int]):
    """The line of each field of one document (a field's path, as
    `("spec", "resources", "gpu", "count")` -> its 1-based line), held compactly: a
    dict of path tuples per document was a fifth of a parsed spec's bytes (issue 22).

    The paths are one tuple in the document's order, the same for every document
    spelled with the same fields in the same order (`fleet.sharing.Sharer` makes it
    one object for all of them); the lines are an array of 32-bit ints (a file is at
    most 1 MiB). A lookup scans the paths: it runs only to word a diagnostic."""

    __slots__ = ("_lines", "_paths")

    def __init__(self, paths: tuple[Path, ...], lines: array[int]) -> None:
        if len(paths) != len(lines):
            raise ValueError(f"{len(paths)} paths but {len(lines)} lines")
        self._paths = paths
        self._lines = lines

    @classmethod
    def of(cls, lines: Mapping[Path, int]) -> FieldLines:
        return cls(tuple(lines), array("I", lines.values()))

    @property
    def paths(self) -> tuple[Path, ...]:
        return self._paths

    def with_paths(self, paths: tuple[Path, ...]) -> FieldLines:
        """The same lines under an equal tuple of paths (a shared one)."""
        if paths != self._paths:
            raise ValueError("not the same paths")
        return FieldLines(paths, self._lines)

    def __getitem__(self, path: Path) -> int:
        try:
            return self._lines[self._paths.index(path)]
        except ValueError:
            raise KeyError(path) from None

    def __iter__(self) -> Iterator[Path]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FieldLines):  # without a dict of each (Mapping's way)
            return self._paths == other._paths and self._lines == other._lines
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # equal to a dict, as a dict is unhashable

    def __repr__(self) -> str:
        return f"FieldLines({dict(self)!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (FieldLines, (self._paths, self._lines))


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a document came from, with the line of each of its fields."""

    file: str
    line: int
    field_lines: Mapping[Path, int]
    """A `FieldLines` when read from a file."""

    def __reduce__(self) -> tuple[object, ...]:
        # a slotted dataclass pickles through `dataclasses.fields()` per object: this is
        # cheaper, and 10,000 of these cross a pipe on a cold `fleet plan`
        return (SourceRef, (self.file, self.line, self.field_lines))

    def line_of(self, *path: str | int) -> int:
        p = tuple(path)
        while p:
            found = self.field_lines.get(p)
            if found is not None:
                return found
            p = p[:-1]
        return self.line

    def at(self, message: str, *path: str | int, kind: str | None = None,
           name: str | None = None) -> Diagnostic:
        return Diagnostic(self.file, self.line_of(*path), message, kind, name)
