"""The fleet spec: every valid document of one commit, cross-checked.

`assemble` takes the documents that passed their own schema (each with where it came
from) and checks what needs the whole repo: unique names and workload ids, dataClasses
defined by a ResidencyPolicy, flavours offered by some cluster, clusters named by a
workload's `placement.clusters`, TeamQuota flavours. A document that fails is left out
with a diagnostic; a workload that fails is kept as *invalid* (by id), so a plan can
list it as `Invalid` instead of silently dropping it, and a controller knows not to
prune what it has running.

Everything is iterated in sorted order, so the spec (and every plan built on it) does
not depend on the order files were read in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from fleet.diagnostics import Diagnostic, SourceRef, sort_key
from fleet.guardrails import GuardrailPolicy, build_guardrails, check_workload
from fleet.ids import ClusterName, Team, WorkloadId
from fleet.models import Cluster, Document, Guardrails, Owners, ResidencyPolicy, TeamQuota, Workload
from fleet.owners import OwnersPolicy, build_owners
from fleet.residency import Residency, build_residency


@dataclass(frozen=True, slots=True)
class FleetSpec:
    clusters: Mapping[ClusterName, Cluster]
    residency: Residency
    quotas: Mapping[Team, TeamQuota]
    workloads: Mapping[WorkloadId, Workload]
    invalid: Mapping[WorkloadId, tuple[Diagnostic, ...]]
    """Workloads that exist in the repo but cannot be planned, with why."""
    errors: tuple[Diagnostic, ...]
    sources: Mapping[tuple[str, str], SourceRef] = field(default_factory=dict)
    """(kind, name or workload id) -> where the document is."""
    guardrails: GuardrailPolicy = field(default_factory=GuardrailPolicy)
    owners: OwnersPolicy = field(default_factory=OwnersPolicy)
    violations: tuple[Diagnostic, ...] = ()
    """The guardrail violations among `errors` (each also makes its workload invalid)."""

    def source_of(self, kind: str, name: str) -> SourceRef | None:
        return self.sources.get((kind, name))

    def with_edited_workloads(self, edits: Mapping[WorkloadId, tuple[Workload, SourceRef]]
                              ) -> FleetSpec | None:
        """This spec with these Workload documents edited in place or added (each
        read, valid on its own, from a file that holds only it), as `assemble` of the
        whole repo would make it; or None when that needs the whole repo.

        A commit that edits a few Workload files changes nothing else `assemble`
        checks: the clusters, residency, quotas, guardrails and owners are this spec's,
        so a workload's cross-checks are its own. Only a spec with no errors and no
        invalid workload is edited here (an edit could end a duplicate, or revive a
        workload a broken file held), and only when every edited workload passes:
        anything else is left to the full read, whose answer this must equal."""
        if self.errors or self.invalid:
            return None
        flavours = {g.flavour for c in self.clusters.values() for g in c.spec.gpus}
        workloads = dict(self.workloads)
        sources = dict(self.sources)
        added = False
        for wid, (doc, src) in edits.items():
            known = sources.get(("Workload", wid))
            if doc.id != wid or (known is not None and known.file != src.file):
                return None  # a second file with this id, or an id moved between files
            if _check_workload(doc, src, self.residency, flavours, self.clusters) or \
                    check_workload(self.guardrails, doc, src):
                return None
            added = added or wid not in workloads
            workloads[wid] = doc
            sources[("Workload", wid)] = src
        return replace(self, workloads=dict(sorted(workloads.items())) if added else workloads,
                       sources=sources)


_NO_SOURCES: Mapping[tuple[str, str], SourceRef] = {}  # a Mapping: never written
_NO_GUARDRAILS = GuardrailPolicy()
_NO_OWNERS = OwnersPolicy()


def placement_view(spec: FleetSpec) -> FleetSpec:
    """`spec` with only what placement reads (`fleet.placement`: the clusters, the
    residency, the quotas, the workloads and the invalid ones), for the placement worker
    (`controllers.runtime.placerproc`): the sources (a `SourceRef` per document, with
    its field lines), the errors, guardrails, owners and violations are for validation
    and the PR plan, and would be pickled to the worker and held there for nothing.
    What is dropped is always the same empty object, so two views of specs that differ
    only there compare equal and the worker's delta sends none of it."""
    return replace(spec, sources=_NO_SOURCES, errors=(), guardrails=_NO_GUARDRAILS,
                   owners=_NO_OWNERS, violations=())


def assemble(
    documents: Iterable[tuple[Document, SourceRef]],
    errors: Iterable[Diagnostic] = (),
    invalid_ids: Mapping[WorkloadId, Iterable[Diagnostic]] | None = None,
) -> FleetSpec:
    """Cross-check documents into a FleetSpec; `errors` are the per-file ones so far."""
    errs: list[Diagnostic] = list(errors)
    invalid: dict[WorkloadId, list[Diagnostic]] = defaultdict(list)
    for wid, diags in (invalid_ids or {}).items():
        invalid[wid].extend(diags)

    by_kind: dict[str, list[tuple[Document, SourceRef]]] = defaultdict(list)
    for doc, src in documents:
        by_kind[doc.kind].append((doc, src))
    for items in by_kind.values():
        items.sort(key=lambda item: (item[1].file, item[1].line))

    sources: dict[tuple[str, str], SourceRef] = {}

    clusters: dict[ClusterName, Cluster] = {}
    for doc, src in by_kind["Cluster"]:
        assert isinstance(doc, Cluster)
        if doc.name in clusters:
            first = sources[("Cluster", doc.name)]
            errs.append(src.at(f"cluster {doc.name} is already defined in {first.file}",
                               "metadata", "name", kind="Cluster", name=doc.name))
            continue
        clusters[doc.name] = doc
        sources[("Cluster", doc.name)] = src
    flavours = {g.flavour for c in clusters.values() for g in c.spec.gpus}

    policies = [(d, s) for d, s in by_kind["ResidencyPolicy"] if isinstance(d, ResidencyPolicy)]
    for doc, src in policies:
        sources[("ResidencyPolicy", doc.metadata.name)] = src
    residency, res_errors = build_residency(policies)
    errs.extend(res_errors)

    quotas: dict[Team, TeamQuota] = {}
    for doc, src in by_kind["TeamQuota"]:
        assert isinstance(doc, TeamQuota)
        if doc.team in quotas:
            first = sources[("TeamQuota", doc.team)]
            errs.append(src.at(f"TeamQuota for team {doc.team} is already defined in "
                               f"{first.file}", "metadata", "name", kind="TeamQuota",
                               name=doc.team))
            continue
        for i, q in enumerate(doc.spec.gpus):
            if q.flavour not in flavours:
                errs.append(src.at(f"flavour {q.flavour} is not offered by any cluster",
                                   "spec", "gpus", i, "flavour", kind="TeamQuota",
                                   name=doc.team))
        quotas[doc.team] = doc
        sources[("TeamQuota", doc.team)] = src

    guardrails, guard_errors = build_guardrails(
        (d, s) for d, s in by_kind["Guardrails"] if isinstance(d, Guardrails))
    errs.extend(guard_errors)
    owners = build_owners((d, s) for d, s in by_kind["Owners"] if isinstance(d, Owners))
    violations: list[Diagnostic] = []

    seen: dict[WorkloadId, list[tuple[Workload, SourceRef]]] = defaultdict(list)
    for doc, src in by_kind["Workload"]:
        assert isinstance(doc, Workload)
        seen[doc.id].append((doc, src))

    workloads: dict[WorkloadId, Workload] = {}
    for wid in sorted(seen):
        entries = seen[wid]
        if len(entries) > 1:
            files = ", ".join(s.file for _, s in entries)
            for _, src in entries:
                d = src.at(f"workload id {wid} is defined more than once ({files})",
                           "metadata", "name", kind="Workload", name=wid)
                errs.append(d)
                invalid[wid].append(d)
            continue
        doc, src = entries[0]
        sources[("Workload", wid)] = src
        problems = _check_workload(doc, src, residency, flavours, clusters)
        broken = check_workload(guardrails, doc, src)
        violations.extend(broken)
        problems.extend(broken)
        if problems or wid in invalid:
            errs.extend(problems)
            invalid[wid].extend(problems)
            continue
        workloads[wid] = doc

    errs.sort(key=sort_key)
    return FleetSpec(
        clusters=dict(sorted(clusters.items())),
        residency=residency,
        quotas=dict(sorted(quotas.items())),
        workloads=dict(sorted(workloads.items())),
        invalid={k: tuple(v) for k, v in sorted(invalid.items())},
        errors=tuple(_dedupe(errs)),
        sources=sources,
        guardrails=guardrails,
        owners=owners,
        violations=tuple(sorted(violations, key=sort_key)),
    )


def _check_workload(
    w: Workload,
    src: SourceRef,
    residency: Residency,
    flavours: set[str],
    clusters: Mapping[ClusterName, Cluster],
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    wid = w.id
    declared = w.spec.placement.data_class
    dc = residency.data_class_of(declared)
    if dc is None:
        out.append(src.at("no placement.dataClass and no ResidencyPolicy default: "
                          "residency is unknown, so the workload cannot be placed",
                          "spec", "placement", kind="Workload", name=wid))
    elif dc not in residency.classes:
        where = ("spec", "placement", "dataClass") if declared else ("spec", "placement")
        out.append(src.at(f"dataClass {dc} is not defined by any ResidencyPolicy", *where,
                          kind="Workload", name=wid))
    for i, f in enumerate(w.spec.resources.gpu.flavours):
        if f not in flavours:
            out.append(src.at(f"flavour {f} is not offered by any cluster",
                              "spec", "resources", "gpu", "flavours", i,
                              kind="Workload", name=wid))
    for i, c in enumerate(w.spec.placement.clusters):
        if c not in clusters:
            out.append(src.at(f"cluster {c} does not exist", "spec", "placement", "clusters",
                              i, kind="Workload", name=wid))
    return out


def _dedupe(items: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[Diagnostic] = set()
    out: list[Diagnostic] = []
    for d in items:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out
