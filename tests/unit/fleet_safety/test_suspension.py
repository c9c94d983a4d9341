"""A suspension shields what runs, except from residency (`fleet.safety.suspension_shields`)."""

from __future__ import annotations

import pytest

from fleet.safety import suspension_shields


@pytest.mark.parametrize(("residency_allows", "shields"), [
    (True, True),     # allowed where it runs: left alone
    (None, True),     # removed from the repo: its prune waits for the resume
    (False, False),   # the policy forbids its data here now: residency fails closed
], ids=["allowed", "not-in-repo", "residency-forbids"])
def test_a_suspension_never_keeps_data_where_residency_forbids_it(
        residency_allows: bool | None, shields: bool) -> None:
    assert suspension_shields(residency_allows) is shields
