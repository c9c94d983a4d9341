"""Errors render as the v1 Status the real API server sends."""

from __future__ import annotations

import pytest

from clusters.sim.errors import ApplyConflict, PatchError, conflict, invalid, not_found
from clusters.sim.listing import parse_bool


def test_not_found_uses_the_qualified_resource_name() -> None:
    s = not_found("jobs", "train", "batch").status()
    assert s["message"] == 'jobs.batch "train" not found' and s["code"] == 404
    assert s["details"] == {"name": "train", "group": "batch", "kind": "jobs"}


def test_conflict_message_matches_the_server() -> None:
    assert "the object has been modified" in conflict("configmaps", "x").message


def test_invalid_lists_each_cause() -> None:
    s = invalid("Job.batch", "j", [("spec.template", "FieldValueInvalid", "bad"),
                                   ("spec.selector", "FieldValueRequired", "gone")]).status()
    assert s["reason"] == "Invalid" and len(s["details"]["causes"]) == 2
    assert s["message"].startswith('Job.batch "j" is invalid: [spec.template: bad')


def test_apply_conflict_groups_fields_per_manager_sorted() -> None:
    one = ApplyConflict([(".spec.replicas", "kubectl")])
    assert one.message == 'Apply failed with 1 conflict: conflict with "kubectl": ' \
        ".spec.replicas"
    two = ApplyConflict([(".data.b", "zz"), (".data.a", "aa"), (".data.c", "zz")])
    assert two.message == ('Apply failed with 3 conflicts: conflicts with "aa":\n- .data.a\n'
                           'conflicts with "zz":\n- .data.b\n- .data.c')
    assert [c["field"] for c in two.status()["details"]["causes"]] == [
        ".data.b", ".data.a", ".data.c"]


def test_patch_error_is_400_or_422() -> None:
    assert PatchError("x").code == 400 and PatchError("x", invalid=True).code == 422


@pytest.mark.parametrize(("text", "value"), [
    ("True", True), ("true", True), ("1", True), ("", True), ("yes", True),
    ("false", False), ("FALSE", False), ("0", False), (None, False)],
    ids=["True", "true", "1", "empty", "yes", "false", "FALSE", "0", "absent"])
def test_query_booleans_convert_like_apimachinery(text: str | None, value: bool) -> None:
    assert parse_bool(text) is value
