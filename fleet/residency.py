"""Residency: which jurisdictions each dataClass may run in. Fail closed.

The repo may hold several ResidencyPolicy documents; their groups and dataClasses are
merged (a name defined twice is an error) into one `Residency`. Groups expand to
countries, recursively, with `EU` and `EEA` always present. A dataClass maps to a set of
countries, or to `ANYWHERE` for `"*"`.

Fail closed means: an unknown dataClass allows nothing, an unknown group expands to
nothing, and a jurisdiction that is not a country code matches nothing. The loader also
reports those as errors, but even if an error were missed, the answer here is "no".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from fleet.diagnostics import Diagnostic, SourceRef
from fleet.jurisdictions import ANYWHERE, BUILTIN_GROUPS, is_country
from fleet.models import ResidencyPolicy


@dataclass(frozen=True, slots=True)
class DataClass:
    name: str
    anywhere: bool
    countries: frozenset[str]

    def allows(self, jurisdiction: str) -> bool:
        if not is_country(jurisdiction):
            return False
        return self.anywhere or jurisdiction in self.countries


@dataclass(frozen=True, slots=True)
class Residency:
    groups: Mapping[str, frozenset[str]]
    classes: Mapping[str, DataClass]
    default: str | None
    version: str = ""
    """A digest of the merged policy: the "policy version" recorded in plans and ledgers."""

    def data_class_of(self, declared: str | None) -> str | None:
        return declared if declared is not None else self.default

    def allows(self, data_class: str | None, jurisdiction: str) -> bool:
        """Fail closed: no dataClass, an unknown one, or an unknown country is a no."""
        name = self.data_class_of(data_class)
        if name is None:
            return False
        dc = self.classes.get(name)
        return dc is not None and dc.allows(jurisdiction)


@dataclass(slots=True)
class _Merge:
    groups: dict[str, tuple[tuple[str, ...], SourceRef]] = field(default_factory=dict)
    classes: dict[str, tuple[tuple[str, ...], SourceRef]] = field(default_factory=dict)
    default: tuple[str, SourceRef] | None = None


def build_residency(
    policies: list[tuple[ResidencyPolicy, SourceRef]],
) -> tuple[Residency, list[Diagnostic]]:
    """Merge every policy into one Residency, reporting conflicts and unknown names."""
    errors: list[Diagnostic] = []
    m = _Merge()
    kind = "ResidencyPolicy"
    for pol, src in sorted(policies, key=lambda p: (p[1].file, p[1].line)):
        name = pol.metadata.name
        for g, members in pol.spec.groups.items():
            if g in BUILTIN_GROUPS:
                errors.append(src.at(f"group {g} is built in and cannot be redefined",
                                     "spec", "groups", g, kind=kind, name=name))
            elif g in m.groups:
                first = m.groups[g][1]
                errors.append(src.at(f"group {g} is already defined in {first.file}:"
                                     f"{first.line_of('spec', 'groups', g)}",
                                     "spec", "groups", g, kind=kind, name=name))
            else:
                m.groups[g] = (members, src)
        for dc, rule in pol.spec.data_classes.items():
            if dc in m.classes:
                first = m.classes[dc][1]
                errors.append(src.at(f"dataClass {dc} is already defined in {first.file}:"
                                     f"{first.line_of('spec', 'dataClasses', dc)}",
                                     "spec", "dataClasses", dc, kind=kind, name=name))
            else:
                m.classes[dc] = (rule.allowed, src)
        if pol.spec.default is not None:
            if m.default is not None and m.default[0] != pol.spec.default:
                errors.append(src.at(f"default dataClass is already {m.default[0]} in "
                                     f"{m.default[1].file}", "spec", "default",
                                     kind=kind, name=name))
            elif m.default is None:
                m.default = (pol.spec.default, src)

    groups: dict[str, frozenset[str]] = dict(BUILTIN_GROUPS)
    for g in sorted(m.groups):
        groups[g] = _expand_group(g, m.groups, groups, (), errors)

    classes: dict[str, DataClass] = {}
    for dc in sorted(m.classes):
        allowed, src = m.classes[dc]
        countries: set[str] = set()
        anywhere = False
        for i, ref in enumerate(allowed):
            if ref == ANYWHERE:
                anywhere = True
            elif is_country(ref):
                countries.add(ref)
            elif ref in groups:
                countries |= groups[ref]
            else:
                errors.append(src.at(f"dataClass {dc}: unknown group {ref} (it allows nothing)",
                                     "spec", "dataClasses", dc, "allowed", i, kind=kind))
        classes[dc] = DataClass(dc, anywhere, frozenset(countries))

    default = None
    if m.default is not None:
        default, src = m.default
        if default not in classes:
            errors.append(src.at(f"default dataClass {default} is not defined in dataClasses",
                                 "spec", "default", kind=kind))
            default = None

    digest = hashlib.sha256(
        json.dumps(
            {
                "groups": {g: sorted(v) for g, v in sorted(groups.items())},
                "classes": {
                    c: ["*"] if d.anywhere else sorted(d.countries)
                    for c, d in sorted(classes.items())
                },
                "default": default,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    return Residency(groups, classes, default, digest), errors


def _expand_group(
    name: str,
    declared: dict[str, tuple[tuple[str, ...], SourceRef]],
    done: dict[str, frozenset[str]],
    chain: tuple[str, ...],
    errors: list[Diagnostic],
) -> frozenset[str]:
    if name in done:
        return done[name]
    members, src = declared[name]
    if name in chain:
        errors.append(src.at(f"group {name} includes itself ({' -> '.join((*chain, name))})",
                             "spec", "groups", name, kind="ResidencyPolicy"))
        return frozenset()
    out: set[str] = set()
    for i, ref in enumerate(members):
        if is_country(ref):
            out.add(ref)
        elif ref in done:
            out |= done[ref]
        elif ref in declared:
            out |= _expand_group(ref, declared, done, (*chain, name), errors)
        else:
            errors.append(src.at(f"group {name}: unknown group {ref}", "spec", "groups", name, i,
                                 kind="ResidencyPolicy"))
    result = frozenset(out)
    if not chain:
        done[name] = result
    return result
