"""A retiring cluster's `ClusterRetiring` condition says what its drain waits for
(`controllers.status.fleetdoc.retiring_message`), never "deleting the 0 workloads"
while something else (pods still terminating, a kept Invalid copy) holds it."""

from __future__ import annotations

import pytest

from controllers.runtime.reconcile import DrainLeft
from controllers.status.fleetdoc import retiring_message

TRAIN, SERVE = "nlp-team.train", "nlp-team.serve"
HEAD = "eu-fra-1: its Cluster file was removed; "


@pytest.mark.parametrize(("left", "says"), [
    (DrainLeft(deleting=frozenset({TRAIN, SERVE})),
     "deleting the 2 workloads still running there (cluster Healthy)"),
    (DrainLeft(deleting=frozenset({TRAIN})),
     "deleting the 1 workload still running there (cluster Healthy)"),
    (DrainLeft(terminating=frozenset({TRAIN})),
     "waiting for the pods of nlp-team/train to terminate (their objects are deleted) "
     "(cluster Healthy)"),
    (DrainLeft(kept=frozenset({SERVE})),
     "keeping nlp-team/serve there (Invalid in the applied commit, or suspended) until "
     "it may go (cluster Healthy)"),
    (DrainLeft(deleting=frozenset({SERVE}), terminating=frozenset({TRAIN})),
     "deleting the 1 workload still running there; waiting for the pods of "
     "nlp-team/train to terminate (their objects are deleted) (cluster Healthy)"),
    (DrainLeft(), "nothing of ours is left there: letting it go (cluster Healthy)"),
    (None, "not connected: what runs there is not known yet (cluster Healthy)"),
], ids=["deleting", "deleting-one", "pods-terminating", "kept", "both", "done",
        "not-connected"])
def test_the_retiring_condition_says_what_the_drain_waits_for(
        left: DrainLeft | None, says: str) -> None:
    assert retiring_message("eu-fra-1", left, "Healthy") == HEAD + says


def test_pods_still_terminating_are_never_said_as_zero_workloads_to_delete() -> None:
    message = retiring_message("eu-fra-1", DrainLeft(terminating=frozenset({TRAIN})),
                               "Degraded")
    assert "deleting" not in message and "0 workloads" not in message
