"""The residency audit: where every workload ran, when, and whether it was allowed to.

An auditor asks "prove that EU personal data only ever ran in the EU this quarter". The
ledger says what the controller did; the fleet repo says which policy and which cluster
jurisdictions were in force at each commit. This module folds the two into *periods*:
a workload running on one cluster, in one jurisdiction, with one flavour and GPU count,
from a start to an end (or still running). A period is a violation when any record in
it, or a relabelling of its cluster in the repo, put the workload somewhere its
dataClass was not allowed by the policy in force at that commit. Fail closed: a commit
the repo does not know, or a dataClass it does not define, is a violation, never a pass.

It streams: one pass over the records (`fleet.ledger.RecordRow`s: the dozen fields the
fold reads, which the ledger store decodes straight from each line), with each
workload's last dataClass and open periods behind one look-up by its id, names kept as
one object each so comparisons end on identity, and the policy answer cached per
(commit, dataClass, jurisdiction): a million records cost a few look-ups each.

Then the cross-check against what runs now (plain data the caller read from the
clusters): GPU workloads that no placement put there, objects we own that the ledger
does not know. Findings list these, and every cluster whose jurisdiction changed in the
repo while workloads ran on it. Violations come first. The report names the ledger head
(last seq and hash) it was built from, so an auditor can rebuild it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Protocol

from fleet.ids import team_of
from fleet.ledger import RecordRow
from fleet.render.keys import workload_id_of_label
from fleet.residency import Residency
from fleet.spec import FleetSpec

OPENS = frozenset({"Placed", "Moved", "FailedOver", "Applied", "DriftCorrected", "Observed"})
"""Events that say the workload runs on `cluster` (from then on)."""


class EventLike(Protocol):
    """What `open_placements` reads of a record or an entry not yet written."""

    @property
    def event(self) -> str: ...
    @property
    def workload(self) -> str: ...
    @property
    def cluster(self) -> str | None: ...
    @property
    def from_cluster(self) -> str | None: ...


def open_placements(events: Iterable[EventLike]) -> set[tuple[str, str]]:
    """(workload, cluster) of every period still open after these records, by the same
    rules as `build_periods`: an opening event opens one (a move closes the one it left),
    Pruned closes one. What a restarted controller compares with what runs."""
    out: set[tuple[str, str]] = set()
    for e in events:
        if e.event in OPENS:
            if e.cluster is None:
                continue
            if e.from_cluster is not None:
                out.discard((e.workload, e.from_cluster))
            out.add((e.workload, e.cluster))
        elif e.event == "Pruned" and e.cluster is not None:
            out.discard((e.workload, e.cluster))
    return out


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    jurisdiction: str
    region: str
    prices: Mapping[str, float | None]
    """Per flavour, `pricePerHour` per GPU (None when the repo gives no price)."""


@dataclass(frozen=True, slots=True)
class FleetAt:
    """What the audit needs from one commit of the fleet repo: policy and clusters."""

    residency: Residency
    clusters: Mapping[str, ClusterInfo]

    @classmethod
    def of(cls, spec: FleetSpec) -> FleetAt:
        return cls(spec.residency, {
            name: ClusterInfo(c.spec.jurisdiction, c.spec.region,
                              {g.flavour: g.price_per_hour for g in c.spec.gpus})
            for name, c in spec.clusters.items()})


FleetLookup = Callable[[str], "FleetAt | None"]
"""commit -> the fleet at that commit, None when the repo does not have the commit."""


@dataclass(slots=True)
class Period:
    workload: str
    cluster: str
    jurisdiction: str
    data_class: str | None
    start: str
    commit: str | None
    """The commit that opened the period (its policy and prices)."""
    flavour: str | None
    gpus: int
    region: str = ""
    price: float | None = None
    end: str | None = None
    """None: still running at the end of the ledger."""
    allowed: bool = True
    why: str = ""
    placed: bool = True
    """False when the period was only observed (no placement put the workload there)."""
    checked: str | None = field(default=None, repr=False, compare=False)
    """The last commit this period was judged at (each commit's policy is judged once)."""

    @property
    def team(self) -> str:
        return team_of(self.workload)

    def to_json(self) -> dict[str, Any]:
        return {"workload": self.workload, "cluster": self.cluster,
                "jurisdiction": self.jurisdiction, "dataClass": self.data_class,
                "from": self.start, "to": self.end, "commit": self.commit,
                "flavour": self.flavour, "gpus": self.gpus, "allowed": self.allowed,
                "why": self.why, "placed": self.placed}


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    """Unplaced | UnknownObject | JurisdictionChanged | UnknownCommit."""
    violation: bool
    cluster: str
    message: str
    workload: str | None = None
    time: str | None = None
    commit: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "violation": self.violation, "cluster": self.cluster,
                "workload": self.workload, "time": self.time, "commit": self.commit,
                "message": self.message}


_KIND_ORDER = {"JurisdictionChanged": 0, "Unplaced": 1, "UnknownObject": 2, "UnknownCommit": 3,
               "NotRunning": 4}


@dataclass(frozen=True, slots=True)
class LiveObject:
    """One object found in a cluster now: who it belongs to and the GPUs it asks for."""

    cluster: str
    kind: str
    namespace: str
    name: str
    workload: str | None
    """From the `aifleet.dev/workload` label (`team.name` or `team/name`), if any."""
    managed: bool
    """Carries `aifleet.dev/managed-by: aifleet`."""
    gpus: int = 0


@dataclass(slots=True)
class Ledger:
    """Periods built from the records (all of them, before any window is applied)."""

    periods: list[Period] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    records: int = 0
    head_seq: int = 0
    head_hash: str = ""
    last_time: str = ""
    data_classes: dict[str, str | None] = field(default_factory=dict)


@dataclass(slots=True)
class _Work:
    """One workload in the fold: its last recorded dataClass and its open periods.

    One look-up by workload id per record reaches both (the id strings are new objects
    for every record, so each look-up that hits compares strings)."""

    dc: str | None = None
    on: dict[str, Period] = field(default_factory=dict)
    """Open periods by cluster."""


def build_periods(rows: Iterable[RecordRow], fleet_at: FleetLookup,
                  data_classes: Mapping[str, str | None] | None = None) -> Ledger:
    """One pass over the records: every period, closed or still open, and the relabels.

    A record without `dataClass` takes the workload's last recorded one, else the one in
    `data_classes` (the repo's head); with neither it is judged unknown (fail closed),
    never as the policy's default.
    """
    fallback = data_classes or {}
    out = Ledger()
    periods = out.periods
    works: dict[str, _Work] = {}
    by_cluster: dict[str, set[tuple[str, str]]] = {}
    fleets: dict[str, FleetAt | None] = {}
    verdicts: dict[tuple[str | None, str | None, str], tuple[bool, str]] = {}
    dcs = out.data_classes
    juris: dict[str, str] = {}
    last_commit: str | None = None
    fa: FleetAt | None = None
    r: RecordRow | None = None

    def verdict(commit: str | None, dc: str | None, j: str) -> tuple[bool, str]:
        key = (commit, dc, j)
        v = verdicts.get(key)
        if v is None:
            v = verdicts[key] = _judge(fleets.get(commit) if commit else None, commit, dc, j)
        return v

    def close(key: tuple[str, str], t: str) -> None:
        st = works.get(key[0])
        p = st.on.pop(key[1], None) if st is not None else None
        if p is not None:
            p.end = t
            by_cluster[key[1]].discard(key)

    def open_(w: str, c: str, j: str, dc: str | None, t: str, commit: str | None,
              flavour: str | None, gpus: int, placed: bool) -> Period:
        info = fa.clusters.get(c) if fa is not None else None
        p = Period(w, c, j, dc, t, commit, flavour, gpus,
                   info.region if info else "", info.prices.get(flavour or "") if info else None,
                   placed=placed)
        periods.append(p)
        works[w].on[c] = p
        by_cluster.setdefault(c, set()).add((w, c))
        return p

    # Hot loop, run once per record: names are made one object each (`canon`), so the
    # comparisons and look-ups below mostly end on identity, never reaching back into
    # the memory of records read long ago; the commit object is reused while it repeats.
    names: dict[str, str] = {}
    canon = names.setdefault
    works_get, juris_get = works.get, juris.get
    n = 0
    for n, r in enumerate(rows, 1):  # noqa: B007 - n and r are read after the loop
        commit = r.commit
        if commit is None or commit == last_commit or commit in fleets:
            # None: a record made outside a commit. A commit seen before but not the last
            # one: a workload's own source commit (ledgers written before every record
            # carried the fleet head it was decided at), never the fleet going back in
            # time. Both are judged by the fleet commit in force: the last one.
            commit = last_commit
        else:
            last_commit = commit
            if commit not in fleets:
                fleets[commit] = fleet_at(commit)
            new_fa = fleets[commit]
            if new_fa is not None and new_fa is not fa:
                fa = new_fa  # before any split below: new periods take this commit's prices
                for name, info in new_fa.clusters.items():
                    old = juris.get(name)
                    if old is not None and old != info.jurisdiction and by_cluster.get(name):
                        _relabel(out, name, old, info.jurisdiction, r.time, commit,
                                 sorted(by_cluster.get(name, ())), works, open_, close,
                                 verdict)
                    juris[name] = info.jurisdiction
        ev = r.event
        if ev in OPENS:
            c = r.cluster
            if c is None:
                continue
            w = r.workload
            st = works_get(w)
            if st is None:
                w = canon(w, w)
                st = works[w] = _Work()
            src = r.from_cluster
            if src is not None:
                close((w, src), r.time)
            dc = r.data_class
            known = st.dc  # = dcs.get(w)
            if dc is None:
                dc = known or fallback.get(w)
            elif dc == known:
                dc = known
            else:
                dc = dcs[w] = st.dc = canon(dc, dc)
            j = juris_get(c) or r.jurisdiction or "??"
            gpus = r.gpus
            flavour = r.flavour
            p = st.on.get(c)
            if p is None or p.jurisdiction != j or p.data_class != dc or (gpus and (
                    p.gpus != gpus or (flavour is not None and p.flavour != flavour))):
                t = r.time
                if p is not None:
                    close((w, c), t)
                    flavour = flavour or p.flavour
                    gpus = gpus or p.gpus
                p = open_(canon(w, w), canon(c, c), j, dc, t, commit, flavour, gpus,
                          ev != "Observed")
            # Judge once per period and commit: most records re-apply at the same commit.
            if p.allowed and p.checked != commit:
                p.checked = commit
                ok, why = verdict(commit, dc, j)
                if not ok:
                    p.allowed, p.why = False, why
        elif ev == "Pruned":
            c = r.cluster
            if c is not None:
                close((r.workload, c), r.time)
    out.records = n
    if r is not None:
        out.head_seq, out.head_hash, out.last_time = r.seq, r.hash, r.time
    for commit, f in fleets.items():
        if f is None:
            out.findings.append(Finding(
                "UnknownCommit", True, "", f"commit {commit} named by the ledger is not in "
                "the fleet repo: the policy in force then is unknown (fail closed)",
                commit=commit))
    return out


def _judge(fa: FleetAt | None, commit: str | None, dc: str | None, j: str) -> tuple[bool, str]:
    if fa is None:
        return False, (f"commit {(commit or 'none')[:12]} is not in the fleet repo: policy "
                       "unknown (fail closed)")
    res = fa.residency
    if dc is None:
        return False, "dataClass unknown: not in the ledger nor the repo (fail closed)"
    name = dc
    if res.allows(dc, j):
        return True, ""
    if name not in res.classes:
        return False, f"dataClass {name} is not defined at {(commit or '')[:12]} (fail closed)"
    return False, (f"{name} does not allow {j} (policy {res.version} at commit "
                   f"{(commit or '')[:12]})")


def _relabel(out: Ledger, cluster: str, old: str, new: str, t: str, commit: str | None,
             running: list[tuple[str, str]], works: dict[str, _Work],
             open_: Callable[..., Period], close: Callable[[tuple[str, str], str], None],
             verdict: Callable[[str | None, str | None, str], tuple[bool, str]]) -> None:
    """The repo moved `cluster` from `old` to `new` while `running` ran on it: split them."""
    bad: list[str] = []
    for key in running:
        p = works[key[0]].on[key[1]]
        close(key, t)
        q = open_(p.workload, cluster, new, p.data_class, t, commit, p.flavour, p.gpus,
                  p.placed)
        ok, why = verdict(commit, p.data_class, new)
        if not ok:
            q.allowed, q.why = False, f"cluster relabelled {old} -> {new}: {why}"
            bad.append(f"{p.workload} ({p.data_class})")
    names = ", ".join(w for w, _ in running[:10])
    if len(running) > 10:
        names += f" and {len(running) - 10} more"
    msg = f"jurisdiction changed {old} -> {new} in the repo at {(commit or '')[:12]} " \
          f"while running {names}"
    if bad:
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        msg += f"; not allowed in {new}: {', '.join(bad[:10])}{more}"
    out.findings.append(Finding("JurisdictionChanged", bool(bad), cluster, msg,
                                time=t, commit=commit))


@dataclass(frozen=True, slots=True)
class Report:
    """A residency audit: periods and findings, violations first, and what it was built from."""

    periods: tuple[Period, ...]
    findings: tuple[Finding, ...]
    records: int
    head_seq: int
    head_hash: str
    start: str | None = None
    end: str | None = None

    @property
    def violations(self) -> int:
        return sum(not p.allowed for p in self.periods) + sum(
            f.violation for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {"ledger": {"records": self.records, "headSeq": self.head_seq,
                           "headHash": self.head_hash},
                "window": {"from": self.start, "to": self.end},
                "violations": self.violations,
                "periods": [p.to_json() for p in self.periods],
                "findings": [f.to_json() for f in self.findings]}


def overlaps(p: Period, start: str | None, end: str | None) -> bool:
    """Whether the period ran at some time in [start, end) (RFC 3339 strings sort as time)."""
    return (end is None or p.start < end) and (start is None or p.end is None or p.end > start)


def residency_audit(rows: Iterable[RecordRow], fleet_at: FleetLookup, *,
                    start: str | None = None, end: str | None = None,
                    live: Iterable[LiveObject] | None = None, latest: FleetAt | None = None,
                    data_classes: Mapping[str, str | None] | None = None,
                    checked: Iterable[str] | None = None) -> Report:
    """Audit the ledger `rows` against the repo (`fleet_at`) and, if given, the live clusters.

    `latest` is the fleet at the repo's head and `data_classes` the workloads' dataClasses
    there: the cross-check judges what runs now by them. `checked`: the clusters `live`
    was read from in full; a period the ledger holds open on one of them that the cluster
    does not show is a finding too.
    """
    ledger = build_periods(rows, fleet_at, data_classes)
    periods = list(ledger.periods) if start is None and end is None else [
        p for p in ledger.periods if overlaps(p, start, end)]
    # By (allowed, workload, start, cluster): stable passes from the last key to the
    # first give the same order as one sort by the tuple, at half the cost, since each
    # pass compares plain strings instead of tuples.
    for key in ("cluster", "start", "workload", "allowed"):
        periods.sort(key=attrgetter(key))
    findings = [f for f in ledger.findings
                if f.time is None or ((start is None or f.time >= start)
                                      and (end is None or f.time < end))]
    if live is not None:
        known = dict(data_classes or {})
        known.update({w: dc for w, dc in ledger.data_classes.items() if dc is not None})
        live = list(live)
        findings.extend(cross_check(live, ledger.periods, latest, known))
        if checked is not None:
            findings.extend(not_running(live, ledger.periods, set(checked)))
    findings.sort(key=lambda f: (not f.violation, _KIND_ORDER.get(f.kind, 9), f.cluster,
                                 f.workload or ""))
    return Report(tuple(periods), tuple(findings), ledger.records, ledger.head_seq,
                  ledger.head_hash, start, end)


def cross_check(live: Iterable[LiveObject], periods: Iterable[Period], latest: FleetAt | None,
                data_classes: Mapping[str, str | None]) -> list[Finding]:
    """What runs now that the ledger cannot account for."""
    running = {(p.workload, p.cluster) for p in periods if p.end is None and p.placed}
    out: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    # GPU objects first, so a Job of ours already reported through its pods is not
    # reported again as an unknown object.
    objects = sorted(live, key=lambda o: (o.gpus == 0, o.cluster, o.namespace, o.kind, o.name))
    for o in objects:
        wid = workload_id_of_label(o.workload) if o.workload else None
        if wid is not None and (wid, o.cluster) in running:
            continue
        if o.gpus > 0:
            who = wid or f"{o.namespace}/{o.name}"
            if (who, o.cluster) in seen:
                continue
            seen.add((who, o.cluster))
            ok, why = _judge_now(latest, o.cluster, data_classes.get(who), who in data_classes)
            out.append(Finding(
                "Unplaced", not ok, o.cluster,
                f"{o.kind} {o.namespace}/{o.name} runs {o.gpus} GPUs that no placement put "
                f"there{'; ' + why if why else ''}", workload=who))
        elif o.managed and (wid or "", o.cluster) not in seen:
            seen.add((wid or "", o.cluster))
            label = o.workload or "no workload label"
            out.append(Finding(
                "UnknownObject", False, o.cluster,
                f"{o.kind} {o.namespace}/{o.name} is labelled as ours ({label}) but the "
                "ledger has no placement of it here", workload=wid))
    return out


def not_running(live: Iterable[LiveObject], periods: Iterable[Period],
                checked: set[str]) -> list[Finding]:
    """Periods the ledger holds open (placed) on a cluster read in full that shows no
    object of that workload: a placement recorded and never applied, or a removal never
    recorded. The ledger claims it runs; the cluster says it does not."""
    shown = {(workload_id_of_label(o.workload), o.cluster) for o in live
             if o.workload and o.managed}
    out: list[Finding] = []
    for p in periods:
        if p.end is None and p.placed and p.cluster in checked and \
                (p.workload, p.cluster) not in shown:
            out.append(Finding(
                "NotRunning", False, p.cluster,
                f"the ledger has {p.workload} running here since {p.start}, but the "
                "cluster shows no object of it (recorded and never applied, or removed "
                "without a record)", workload=p.workload, time=p.start))
    return out


def _judge_now(latest: FleetAt | None, cluster: str, dc: str | None,
               known: bool) -> tuple[bool, str]:
    if latest is None:
        return False, "the fleet repo was not read: residency cannot be judged (fail closed)"
    info = latest.clusters.get(cluster)
    if info is None:
        return False, "the cluster is not in the fleet repo: jurisdiction unknown (fail closed)"
    if not known:
        return False, f"its dataClass is unknown: not allowed in {info.jurisdiction} " \
                      "(fail closed)"
    if latest.residency.allows(dc, info.jurisdiction):
        return True, ""
    name = latest.residency.data_class_of(dc)
    return False, f"{name} does not allow {info.jurisdiction}"
