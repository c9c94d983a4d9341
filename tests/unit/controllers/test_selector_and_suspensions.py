"""Label selectors of `fleet get -l`, and the suspension state file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controllers.runtime.suspension import FILE, Suspensions
from controllers.selector import SelectorError, parse_selector

LABELS = {"tier": "prod", "owner": "alice"}


@pytest.mark.parametrize(("selector", "matches"), [
    ("tier=prod", True), ("tier==prod", True), ("tier=dev", False),
    ("tier!=dev", True), ("tier!=prod", False), ("tier", True), ("!tier", False),
    ("!nope", True), ("nope", False), ("tier in (prod,dev)", True),
    ("tier in (dev)", False), ("tier notin (dev, qa)", True), ("tier notin (prod)", False),
    ("tier=prod,owner=alice", True), ("tier=prod,owner=bob", False),
    (" tier = prod , owner in ( alice ) ", True), ("nope!=x", True),
], ids=lambda v: str(v))
def test_selector_matches_as_kubectl_does(selector: str, matches: bool) -> None:
    assert parse_selector(selector)(LABELS) is matches


@pytest.mark.parametrize("selector", ["", "tier in prod", "a=b=c", "(x)", "tier in (a", ","])
def test_a_selector_that_does_not_parse_is_refused(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(selector)


def test_suspensions_survive_a_reload_owner_only(tmp_path: Path) -> None:
    s = Suspensions.load(tmp_path, clock=lambda: "2026-12-03T10:00:00Z")
    assert s.change(suspend=True, workload="nlp-team/train")
    assert not s.change(suspend=True, workload="nlp-team/train")
    assert s.change(suspend=True, cluster="eu-fra-1")
    again = Suspensions.load(tmp_path)
    assert again.workloads == {"nlp-team/train": "2026-12-03T10:00:00Z"}
    assert again.clusters == {"eu-fra-1": "2026-12-03T10:00:00Z"}
    assert again.holds("us-east-1", "nlp-team/train")
    assert again.holds("eu-fra-1", "search-team/rank")
    assert not again.holds("us-east-1", "search-team/rank")
    assert (tmp_path / FILE).stat().st_mode & 0o077 == 0
    assert again.change(suspend=False, cluster="eu-fra-1")
    assert Suspensions.load(tmp_path).clusters == {}


@pytest.mark.parametrize("content", [
    "not json", json.dumps({"version": 2, "workloads": {}}),
    json.dumps({"version": 1, "workloads": {"a/b": 3}}),
    json.dumps({"version": 1, "workloads": ["a/b"]}),
], ids=["garbage", "other-version", "not-text", "a-list"])
def test_a_damaged_file_is_read_as_nothing_suspended(tmp_path: Path, content: str) -> None:
    (tmp_path / FILE).write_text(content)
    s = Suspensions.load(tmp_path)
    assert s.workloads == {} and s.clusters == {}


def test_status_rows_and_condition(tmp_path: Path) -> None:
    s = Suspensions.load(tmp_path, clock=lambda: "2026-12-03T10:00:00Z")
    doc = {"source": {"conditions": []},
           "workloads": [{"id": "nlp-team/train"}, {"id": "search-team/rank"}],
           "clusters": [{"name": "eu-fra-1"}]}
    s.annotate(doc)
    assert doc["source"]["conditions"] == []
    s.change(suspend=True, workload="nlp-team/train")
    s.change(suspend=True, cluster="eu-fra-1")
    s.annotate(doc)
    assert doc["workloads"][0]["suspended"] == {"since": "2026-12-03T10:00:00Z"}
    assert "suspended" not in doc["workloads"][1]
    assert doc["clusters"][0]["suspended"] == {"since": "2026-12-03T10:00:00Z"}
    (cond,) = doc["source"]["conditions"]
    assert cond["type"] == "Suspended" and "nlp-team/train" in cond["message"]
    assert "eu-fra-1" in cond["message"]
