"""Diagnostics: what is wrong with the fleet repo, and exactly where.

A diagnostic is data, not an exception: bad input is reported and the rest of the repo
keeps working. `file` is the path a person would open (relative to the Git repository
root), `line` is 1-based. Its JSON form is the `errors[]` item of plan.schema.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a document came from, with the line of each of its fields."""

    file: str
    line: int
    field_lines: dict[tuple[str | int, ...], int]

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
