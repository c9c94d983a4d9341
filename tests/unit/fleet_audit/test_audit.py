"""The residency audit: periods, violations, relabelled clusters, and the live cross-check."""

from __future__ import annotations

from fleet.audit import FleetAt, LiveObject, residency_audit
from fleet.ledger import Entry, rows_of
from tests.unit.fleet_audit.builders import at, docs, fleet_at, placed, pruned

C1 = fleet_at({"eu-fra-1": "DE", "eu-par-1": "FR", "us-east-1": "US"})
C2 = fleet_at({"eu-fra-1": "US", "eu-par-1": "FR", "us-east-1": "US"})  # fra relabelled


def repo(**commits: FleetAt) -> dict[str, FleetAt]:
    return commits


def test_a_placement_then_a_move_makes_two_periods() -> None:
    ledger = docs(
        placed("10:00", "nlp/train", "eu-fra-1", "DE"),
        placed("10:01", "nlp/train", "eu-fra-1", "DE", event="Applied"),
        placed("12:00", "nlp/train", "eu-par-1", "FR", event="Moved", from_cluster="eu-fra-1"),
        Entry(at("12:30"), "Pending", "nlp/big", commit="c1", result="pending"),
    )
    report = residency_audit(rows_of(ledger), repo(c1=C1).get)
    assert [(p.cluster, p.jurisdiction, p.start, p.end, p.allowed) for p in report.periods] == [
        ("eu-fra-1", "DE", at("10:00"), at("12:00"), True),
        ("eu-par-1", "FR", at("12:00"), None, True),
    ]
    assert report.violations == 0 and report.findings == ()
    assert (report.records, report.head_seq, report.head_hash) == (4, 4, ledger[-1]["hash"])


def test_eu_data_placed_in_the_us_is_a_violation_listed_first() -> None:
    ledger = docs(
        placed("09:00", "nlp/a", "eu-fra-1", "DE"),
        placed("10:00", "nlp/z", "us-east-1", "US"),
        pruned("11:00", "nlp/z", "us-east-1"),
        placed("10:00", "web/public", "us-east-1", "US", data_class="public"),
    )
    report = residency_audit(rows_of(ledger), repo(c1=C1).get)
    first = report.periods[0]
    assert (first.workload, first.allowed, first.end) == ("nlp/z", False, at("11:00"))
    assert first.why == f"eu-personal does not allow US (policy {C1.residency.version} at " \
                        "commit c1)"
    assert [p.allowed for p in report.periods] == [False, True, True]
    assert report.violations == 1


def test_a_cluster_relabelled_de_to_us_while_running_eu_workloads() -> None:
    ledger = docs(
        placed("10:00", "nlp/train", "eu-fra-1", "DE", commit="c1"),
        placed("10:00", "web/site", "eu-fra-1", "DE", commit="c1", data_class="public"),
        # the next record made at the relabelling commit, whatever it is about
        Entry(at("14:00"), "Applied", "bio/other", commit="c2", cluster="eu-par-1",
              jurisdiction="FR", data_class="public", gpus=8),
        placed("15:00", "nlp/train", "eu-par-1", "FR", commit="c2", event="Moved",
               from_cluster="eu-fra-1"),
    )
    report = residency_audit(rows_of(ledger), repo(c1=C1, c2=C2).get)
    bad = report.periods[0]
    assert (bad.workload, bad.cluster, bad.jurisdiction, bad.start, bad.end) == (
        "nlp/train", "eu-fra-1", "US", at("14:00"), at("15:00"))
    assert not bad.allowed
    assert bad.why.startswith("cluster relabelled DE -> US: eu-personal does not allow US")
    [finding] = report.findings
    assert (finding.kind, finding.violation, finding.cluster, finding.time) == (
        "JurisdictionChanged", True, "eu-fra-1", at("14:00"))
    assert finding.message == ("jurisdiction changed DE -> US in the repo at c2 while running "
                               "nlp/train, web/site; not allowed in US: nlp/train (eu-personal)")
    # before the relabel it was fine; public data stays fine after it
    ok = {(p.workload, p.jurisdiction): p.allowed for p in report.periods}
    assert ok[("nlp/train", "DE")] and ok[("web/site", "US")] and ok[("web/site", "DE")]


def test_a_commit_missing_from_the_repo_fails_closed() -> None:
    ledger = docs(placed("10:00", "nlp/a", "eu-fra-1", "DE", commit="gone"))
    report = residency_audit(rows_of(ledger), repo(c1=C1).get)
    assert not report.periods[0].allowed
    assert "is not in the fleet repo" in report.periods[0].why
    assert [f.kind for f in report.findings] == ["UnknownCommit"]


def test_a_drift_correction_at_a_later_policy_is_judged_by_that_policy() -> None:
    strict = fleet_at({"eu-fra-1": "DE"})
    strict = FleetAt(fleet_at({"eu-fra-1": "BR"}).residency, strict.clusters)
    ledger = docs(placed("10:00", "nlp/a", "eu-fra-1", "DE", data_class="br-personal",
                         commit="c9"))
    assert not residency_audit(rows_of(ledger), repo(c9=strict).get).periods[0].allowed


def test_the_window_keeps_only_periods_that_overlap_it() -> None:
    ledger = docs(
        placed("08:00", "nlp/early", "eu-fra-1", "DE"),
        pruned("09:00", "nlp/early", "eu-fra-1"),
        placed("10:00", "nlp/in", "eu-fra-1", "DE"),
        placed("13:00", "nlp/late", "eu-fra-1", "DE"),
    )
    report = residency_audit(rows_of(ledger), repo(c1=C1).get, start=at("09:30"), end=at("12:00"))
    assert [p.workload for p in report.periods] == ["nlp/in"]


def test_the_live_cross_check_finds_what_no_placement_put_there() -> None:
    ledger = docs(placed("10:00", "nlp/train", "eu-fra-1", "DE"))
    live = [
        # what the controller placed: accounted for
        LiveObject("eu-fra-1", "Job", "nlp", "train", "nlp.train", managed=True, gpus=16),
        # the same workload applied by hand into a US cluster: EU data in the US
        LiveObject("us-east-1", "Job", "nlp", "train", "nlp.train", managed=True, gpus=16),
        # a GPU job nobody labelled, on an EU cluster: unplaced but not a violation
        LiveObject("eu-par-1", "Job", "ml", "adhoc", None, managed=False, gpus=8),
        # a leftover object of ours the ledger never placed there
        LiveObject("eu-par-1", "Service", "web", "site", "web.site", managed=True),
    ]
    report = residency_audit(rows_of(ledger), repo(c1=C1).get, live=live, latest=C1,
                             data_classes={"ml/adhoc": "public"})
    assert [(f.kind, f.violation, f.cluster, f.workload) for f in report.findings] == [
        ("Unplaced", True, "us-east-1", "nlp/train"),
        ("Unplaced", False, "eu-par-1", "ml/adhoc"),
        ("UnknownObject", False, "eu-par-1", "web/site"),
    ]
    assert report.findings[0].message == (
        "Job nlp/train runs 16 GPUs that no placement put there; eu-personal does not allow US")
    assert report.violations == 1


def test_live_gpus_with_an_unknown_data_class_fail_closed() -> None:
    live = [LiveObject("eu-fra-1", "Job", "x", "y", None, managed=False, gpus=1)]
    report = residency_audit([], repo().get, live=live, latest=C1)
    assert report.findings[0].violation
    assert "dataClass is unknown" in report.findings[0].message
    assert report.records == 0 and report.head_hash == ""


def test_a_record_without_a_data_class_is_judged_by_the_repo_or_fails_closed() -> None:
    ledger = docs(placed("10:00", "nlp/a", "us-east-1", "US", data_class=None),
                  placed("10:00", "web/b", "us-east-1", "US", data_class=None))
    report = residency_audit(rows_of(ledger), repo(c1=C1).get, data_classes={"web/b": "public"})
    verdicts = {p.workload: (p.allowed, p.why) for p in report.periods}
    # never the policy's default (public here): unknown data is not public data
    assert verdicts["nlp/a"] == (
        False, "dataClass unknown: not in the ledger nor the repo (fail closed)")
    assert verdicts["web/b"] == (True, "")


def test_a_record_without_a_commit_is_judged_by_the_last_commit_seen() -> None:
    ledger = docs(placed("10:00", "nlp/a", "eu-fra-1", "DE"),
                  Entry(at("11:00"), "Observed", "nlp/b", cluster="eu-par-1",
                        jurisdiction="FR", data_class="eu-personal", gpus=8))
    report = residency_audit(rows_of(ledger), repo(c1=C1).get)
    assert [(p.workload, p.allowed, p.commit, p.placed) for p in report.periods] == [
        ("nlp/a", True, "c1", True), ("nlp/b", True, "c1", False)]


def test_a_workloads_own_older_source_commit_is_not_a_relabel_back() -> None:
    """Issue 18, first relabel case: eu-fra-1 is relabelled DE -> US at c2; a record
    written later carries a workload's own (older) source commit c1, as records did
    before each carried the fleet commit it was decided at. That is not the fleet going
    back: no spurious "US -> DE", and the periods after c2 stay judged as US."""
    ledger = docs(
        placed("10:00", "nlp/train", "eu-fra-1", "DE", commit="c1"),
        placed("10:00", "web/site", "eu-fra-1", "DE", commit="c1", data_class="public"),
        Entry(at("14:00"), "Applied", "bio/other", commit="c2", cluster="eu-par-1",
              jurisdiction="FR", data_class="public", gpus=8),
        placed("14:30", "web/site", "eu-fra-1", "DE", commit="c1", data_class="public",
               event="Applied"),
        placed("14:40", "nlp/train", "eu-fra-1", "DE", commit="c1", event="Applied"),
        placed("15:00", "nlp/train", "eu-par-1", "FR", commit="c2", event="Moved",
               from_cluster="eu-fra-1"),
    )
    report = residency_audit(rows_of(ledger), repo(c1=C1, c2=C2).get)
    assert [(f.kind, f.message.split(" in the repo")[0]) for f in report.findings] == [
        ("JurisdictionChanged", "jurisdiction changed DE -> US")]
    on_fra = [(p.workload, p.jurisdiction, p.start, p.end, p.allowed)
              for p in report.periods if p.cluster == "eu-fra-1"]
    assert ("nlp/train", "US", at("14:00"), at("15:00"), False) in on_fra
    assert not any(j == "DE" and start > at("14:00") for _, j, start, _, _ in on_fra)
    assert report.violations == 2  # the US period of nlp/train and the relabel finding


def test_a_second_relabel_is_seen_through_pending_and_pruned_records() -> None:
    """Issue 18, second relabel case: eu-fra-1 goes DE -> FR (c2), then FR -> US (c3),
    and after c3 the ledger has only Pending and Pruned records. They carry the fleet
    commit they were decided at, so the FR -> US relabel is seen and the time nlp/train
    ran there as US is a violation; with `commit: null` (as they were) it was missed."""
    c2 = fleet_at({"eu-fra-1": "FR", "eu-par-1": "FR", "us-east-1": "US"})
    c3 = fleet_at({"eu-fra-1": "US", "eu-par-1": "FR", "us-east-1": "US"})

    def ledger(commits: bool) -> list[dict[str, object]]:
        return docs(
            placed("10:00", "nlp/train", "eu-fra-1", "DE", commit="c1"),
            Entry(at("12:00"), "Pending", "nlp/other", commit="c2" if commits else None),
            Entry(at("13:00"), "Pending", "nlp/big", commit="c3" if commits else None),
            Entry(at("14:00"), "Pruned", "nlp/train", commit="c3" if commits else None,
                  cluster="eu-fra-1"),
        )

    fleet = repo(c1=C1, c2=c2, c3=c3).get
    report = residency_audit(rows_of(ledger(True)), fleet)
    assert [(p.jurisdiction, p.start, p.end, p.allowed) for p in report.periods
            if p.workload == "nlp/train"] == [
        ("US", at("13:00"), at("14:00"), False),
        ("DE", at("10:00"), at("12:00"), True),
        ("FR", at("12:00"), at("13:00"), True),
    ]
    assert [f.message.split(" in the repo")[0] for f in report.findings] == [
        "jurisdiction changed FR -> US", "jurisdiction changed DE -> FR"]
    missed = residency_audit(rows_of(ledger(False)), fleet)
    assert missed.violations == 0  # what records without a commit let through
