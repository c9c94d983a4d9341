"""Owners and protected paths: who must approve a change to which files of the fleet repo.

`policies/owners.yaml` (kind `Owners`) maps CODEOWNERS-style path patterns to owners:

    spec:
      rules:
        - {path: "clusters/**", owners: ["@platform-team"]}
        - {path: "policies/**", owners: ["@platform-team"]}
        - {path: "workloads/nlp-team/**", owners: ["@nlp-leads"]}

As in GitHub's CODEOWNERS, the *last* matching rule wins, `*` matches within one path
component, `**` across components, a pattern without a `/` matches a file name at any
depth and a pattern ending in `/` matches everything below that folder.

Two folders are protected whatever the rules say: `clusters/` (hardware, connections)
and `policies/` (residency, quotas, guardrails, these owners). A change there needs the
platform team; with no rule naming its owners, the plan says so instead of staying
silent (fail closed). A change to another team's `workloads/<team>/` folder is flagged
too. The rules are read from the *base* of a pull request, never its head, so a change
cannot pick its own reviewers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from fleet.diagnostics import SourceRef
from fleet.models import Owners

PROTECTED = ("clusters/", "policies/")
UNKNOWN_OWNER = "the platform team (no rule in policies/owners.yaml names them)"


@dataclass(frozen=True, slots=True)
class OwnerEntry:
    pattern: str
    owners: tuple[str, ...]
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class OwnersPolicy:
    rules: tuple[OwnerEntry, ...] = ()

    def owners_of(self, path: str) -> OwnerEntry | None:
        """The last rule matching `path` (relative to the fleet root), CODEOWNERS-style."""
        for entry in reversed(self.rules):
            if path_matches(entry.pattern, path):
                return entry
        return None


def build_owners(docs: Iterable[tuple[Owners, SourceRef]]) -> OwnersPolicy:
    """All Owners documents' rules, in file order then rule order (last match wins)."""
    rules: list[OwnerEntry] = []
    for doc, src in sorted(docs, key=lambda d: (d[1].file, d[1].line)):
        for i, r in enumerate(doc.spec.rules):
            rules.append(OwnerEntry(r.path, r.owners, src.file,
                                    src.line_of("spec", "rules", i, "path")))
    return OwnersPolicy(tuple(rules))


@dataclass(frozen=True, slots=True, order=True)
class PathFlag:
    """One changed file that needs someone's approval, and why."""

    file: str
    kind: str
    """`protected` (clusters/, policies/), `other-team` or `owned` (a rule names owners)."""
    owners: tuple[str, ...]
    message: str

    def to_json(self) -> dict[str, object]:
        return {"file": self.file, "kind": self.kind, "owners": list(self.owners),
                "message": self.message}


def team_of(path: str) -> str | None:
    parts = path.split("/")
    return parts[1] if len(parts) >= 3 and parts[0] == "workloads" else None


def infer_team(paths: Iterable[str]) -> str | None:
    """The PR author's team when every changed workload file is in one team's folder."""
    teams = {t for t in (team_of(p) for p in paths) if t is not None}
    return next(iter(teams)) if len(teams) == 1 else None


def flag_paths(policy: OwnersPolicy, changed: Iterable[str], author_team: str | None,
               display: dict[str, str] | None = None) -> list[PathFlag]:
    """The changed files (fleet-root paths) that need approval, one flag each.

    `author_team` None with workload files of several teams changed: each team folder is
    flagged, since nobody can tell whose change it is.
    """
    paths = sorted(set(changed))
    teams = sorted({t for t in (team_of(p) for p in paths) if t is not None})
    out: list[PathFlag] = []
    for path in paths:
        shown = (display or {}).get(path, path)
        entry = policy.owners_of(path)
        owners = entry.owners if entry is not None else ()
        who = ", ".join(owners) if owners else UNKNOWN_OWNER
        rule = f" (rule {entry.pattern!r}, {entry.file}:{entry.line})" if entry else ""
        if path.startswith(PROTECTED):
            folder = path.split("/", 1)[0]
            out.append(PathFlag(shown, "protected", owners,
                                f"{folder}/ is protected: needs approval from {who}{rule}"))
            continue
        team = team_of(path)
        if team is not None and author_team is not None and team != author_team:
            out.append(PathFlag(shown, "other-team", owners,
                                f"changes team {team}'s folder in a change by {author_team}: "
                                f"needs approval from {who}{rule}"))
        elif team is not None and author_team is None and len(teams) > 1:
            out.append(PathFlag(shown, "other-team", owners,
                                f"the change touches the folders of {len(teams)} teams "
                                f"({', '.join(teams)}): needs approval from {who}{rule}"))
        elif entry is not None:
            out.append(PathFlag(shown, "owned", owners, f"owned by {who}{rule}"))
    return out


def path_matches(pattern: str, path: str) -> bool:
    return _compile(pattern).match(path) is not None


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
    p = pattern.lstrip("/")
    folder = p.endswith("/")
    p = p.rstrip("/")
    out = []
    i = 0
    while i < len(p):
        if p.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif p.startswith("**", i):
            out.append(".*")
            i += 2
        elif p[i] == "*":
            out.append("[^/]*")
            i += 1
        elif p[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(p[i]))
            i += 1
    body = "".join(out)
    prefix = "" if anchored else "(?:.*/)?"
    # A folder pattern, or any pattern naming a folder, covers everything below it.
    suffix = "/.*" if folder else "(?:/.*)?"
    return re.compile(f"^{prefix}{body}{suffix}$")
