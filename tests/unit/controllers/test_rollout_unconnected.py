"""`Rollout.cluster_done`: a Cluster file of the spec that is not connected yet has
applied nothing, so the head is not applied until it is (or is known unconnectable,
or suspended, or another shard's); a replica that holds no shard applies no commit.

Before, the loop looked only at connected clusters: at start (clusters still
connecting) and after a shard was taken, a replica said `commit_applied` -- status,
readiness, the metric and the source guard's base -- before anything ran there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.placement import synthetic_spec
from controllers.runtime.desired import DesiredState
from controllers.runtime.rollout import Rollout
from controllers.runtime.suspension import Suspensions
from controllers.settings import Settings
from controllers.status.cache import Versioned
from controllers.status.metrics import ControllerMetrics
from fleet.ids import ClusterName
from fleet.placement.types import Plan
from fleet.render import render

NAMES = ["c0000", "c0001", "c0002", "c0003"]


@dataclass
class FakeAdapter:
    health_state: str = "Healthy"


class Fleet:
    """A Rollout over a spec of `NAMES`, with the Manager's kind of adapter map."""

    def __init__(self, tmp: Path) -> None:
        self.desired = DesiredState(render)
        self.desired.spec = synthetic_spec(len(NAMES), 0)
        assert sorted(self.desired.spec.clusters) == NAMES
        self.desired.head = "c1"
        self.desired.plan = Plan("c1", {})
        self.adapters: Versioned[str, Any] = Versioned()
        self.signatures: dict[str, object] = {}
        self.applied: list[str | None] = []
        self.suspensions = Suspensions.load(tmp / "state")
        self.failed: set[str] = set()
        self.owned: set[str] = set(NAMES)
        self.holds_shard = True
        self.rollout = Rollout(Settings(repo=str(tmp), state_dir=tmp / "state"),
                               desired=self.desired, adapters=self.adapters,
                               suspensions=self.suspensions,
                               applied_signature=self.signatures,
                               metrics=ControllerMetrics(), may_act=lambda: True,
                               task_group=lambda: None, on_applied=self.applied.append)
        self.rollout.unconnectable = self.failed.__contains__
        self.rollout.owns = self.owned.__contains__
        self.rollout.applies = lambda: self.holds_shard

    def connect(self, name: str, health: str = "Healthy") -> None:
        self.adapters[name] = FakeAdapter(health)

    def pass_done(self, name: str) -> str | None:
        """`name`'s pass applied the head's set there, as the reconciler records it."""
        self.signatures[name] = self.desired.signature(ClusterName(name))
        self.rollout.cluster_done(name)
        return self.rollout.applied_commit


def test_a_cluster_not_connected_yet_keeps_the_head_from_being_applied(
        tmp_path: Path) -> None:
    f = Fleet(tmp_path)
    f.rollout.cluster_done("")  # the first plan: nothing is connected yet
    assert f.rollout.applied_commit is None
    for name in NAMES[:3]:
        f.connect(name)
        assert f.pass_done(name) is None  # NAMES[3] is still connecting
    assert f.applied == []
    f.connect(NAMES[3])
    assert f.rollout.applied_commit is None  # connected, but its pass has not ended
    assert f.pass_done(NAMES[3]) == "c1"
    assert f.applied == ["c1"]


def test_a_cluster_whose_connection_failed_is_not_waited_for(tmp_path: Path) -> None:
    # A bad kubeconfig entry (ClusterSet.connect_errors; status: ConnectFailed) must
    # not hold the head forever, as an Unreachable cluster does not.
    f = Fleet(tmp_path)
    f.connect(NAMES[0])
    f.connect(NAMES[1], health="Unreachable")
    assert f.pass_done(NAMES[0]) is None  # NAMES[2] and [3] not connected
    f.failed.add(NAMES[2])
    assert f.pass_done(NAMES[0]) is None  # NAMES[3] still connecting
    f.failed.add(NAMES[3])
    assert f.pass_done(NAMES[0]) == "c1"


def test_a_suspended_or_another_shards_unconnected_cluster_is_not_waited_for(
        tmp_path: Path) -> None:
    f = Fleet(tmp_path)
    f.owned -= {NAMES[3]}  # --shards: another replica applies it
    f.suspensions.clusters[NAMES[2]] = "2026-12-05T00:00:00Z"
    for name in NAMES[:2]:
        f.connect(name)
        f.pass_done(name)
    assert f.rollout.applied_commit == "c1"


def test_a_replica_that_holds_no_shard_applies_no_commit(tmp_path: Path) -> None:
    f = Fleet(tmp_path)
    f.holds_shard = False
    f.owned.clear()  # before its first Lease round, or a spare
    f.rollout.cluster_done("")
    assert f.rollout.applied_commit is None and f.applied == []
    f.holds_shard = True  # it takes a shard: its clusters are connected, then applied
    f.owned.update(NAMES[:2])
    f.rollout.cluster_done("")
    assert f.rollout.applied_commit is None  # connecting
    f.connect(NAMES[0])
    assert f.pass_done(NAMES[0]) is None
    f.connect(NAMES[1])
    assert f.pass_done(NAMES[1]) == "c1"
    # It lets its shard go: what it applied stays applied, a new head is not.
    f.holds_shard = False
    f.owned.clear()
    assert f.pass_done(NAMES[0]) == "c1"
    f.desired.head = "c2"
    f.desired.plan = Plan("c2", {})
    f.rollout.cluster_done("")
    assert f.rollout.applied_commit == "c1"


STATES = ("absent", "failed", "done", "behind", "unreachable")


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(STATES),
                                st.booleans(), st.booleans()),
                      min_size=1, max_size=25),
       holds=st.booleans())
def test_applied_is_what_a_walk_over_every_cluster_says(
        tmp_path_factory: Any, steps: list[tuple[str, str, bool, bool]],
        holds: bool) -> None:
    """Through any sequence of clusters connecting, failing, falling behind and
    applying (kept sets rebuilt or not), the head becomes applied at the first pass
    where a walk over every Cluster file says each owned, unsuspended one is done or
    known away -- never earlier, and never later."""
    f = Fleet(tmp_path_factory.mktemp("walk"))
    f.holds_shard = holds
    state = dict.fromkeys(NAMES, "absent")
    for name, what, owned, suspended in steps:
        (f.owned.add if owned else f.owned.discard)(name)
        if suspended:
            f.suspensions.clusters[name] = "2026-12-05T00:00:00Z"
        else:
            f.suspensions.clusters.pop(name, None)
        state[name] = what
        f.failed.discard(name)
        if what in ("absent", "failed"):
            f.adapters.pop(name, None)
            f.signatures.pop(name, None)
            if what == "failed":
                f.failed.add(name)
        else:
            if name not in f.adapters or f.adapters[name].health_state != (
                    "Unreachable" if what == "unreachable" else "Healthy"):
                f.connect(name, "Unreachable" if what == "unreachable" else "Healthy")
            if what == "done":
                f.signatures[name] = f.desired.signature(ClusterName(name))
            else:
                f.signatures.pop(name, None)
        was = f.rollout.applied_commit
        f.rollout.cluster_done(name)

        def waits(n: str) -> bool:
            return n in f.owned and n not in f.suspensions.clusters and \
                state[n] in ("absent", "behind")
        expect = holds and not any(waits(n) for n in NAMES)
        assert f.rollout.applied_commit == ("c1" if expect or was == "c1" else None)
