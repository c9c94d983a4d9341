"""`fleet.safety`, tenancy and identity: twin clusters, reserved taints, fencing."""

from __future__ import annotations

import pytest

from fleet.models.cluster import Taint
from fleet.models.workload import Toleration
from fleet.safety import (
    fence_refusal,
    prune_held_back,
    reserved_taint,
    server_identity,
    shared_servers,
    wildcard_tolerates,
)


@pytest.mark.parametrize(("a", "b", "same"), [
    ("https://10.0.0.1:6443", "https://10.0.0.1:6443/", True),
    ("https://API.example.com", "https://api.example.com:443", True),
    ("http://api:80/", "http://api", True),
    ("https://api.example.com:6443", "https://api.example.com:6444", False),
    ("https://api.example.com", "http://api.example.com", False),
    ("https://a.example.com", "https://b.example.com", False),
    ("https://host/cluster-1", "https://host/cluster-2", False),
], ids=["trailing-slash", "case-and-default-port", "http-default-port", "other-port",
        "other-scheme", "other-host", "other-path"])
def test_spellings_of_one_server_are_one_identity(a: str, b: str, same: bool) -> None:
    assert (server_identity(a) == server_identity(b)) is same


@pytest.mark.parametrize(("servers", "refused"), [
    ({"eu-fra-1": "https://a:6443", "us-east-1": "https://b:6443"}, {}),
    ({"de-fra-2": "https://us:6443", "us-east-1": "https://US:6443/"},
     {"de-fra-2": ("de-fra-2", "us-east-1"), "us-east-1": ("de-fra-2", "us-east-1")}),
    ({"a": "https://x", "b": "https://x", "c": "https://x", "d": "https://y"},
     {n: ("a", "b", "c") for n in "abc"}),
    ({}, {}),
], ids=["distinct", "mislabelled-twin", "three-on-one-server", "empty"])
def test_every_cluster_sharing_a_server_is_refused(servers: dict[str, str],
                                                    refused: dict[str, tuple[str, ...]]
                                                    ) -> None:
    assert shared_servers(servers) == refused


@pytest.mark.parametrize(("key", "reserved"), [
    ("aifleet.dev/quarantine", True),
    ("residency.aifleet.dev/hold", True),
    ("maintenance", False),
    ("example.com/maintenance", False),
    ("notaifleet.dev/x", False),
    ("aifleet.dev.example.com/x", False),
], ids=["aifleet-domain", "aifleet-subdomain", "plain", "other-domain", "lookalike",
        "lookalike-prefix"])
def test_a_keyless_toleration_passes_every_taint_but_the_fleets_own(key: str,
                                                                     reserved: bool) -> None:
    assert reserved_taint(key) is reserved
    assert wildcard_tolerates(key) is not reserved
    wildcard = Toleration(operator="Exists")
    assert wildcard.tolerates(Taint(key=key, effect="NoSchedule")) is not reserved
    named = Toleration(key=key, operator="Exists")
    assert named.tolerates(Taint(key=key, effect="NoSchedule"))


@pytest.mark.parametrize(("ours", "holder", "generation", "may"), [
    (3, "me", 3, True),
    (2, "me", 3, False),
    (3, "other", 4, False),
    (3, "other", 3, False),
    (3, "me", None, False),
], ids=["current-leader", "deposed-generation", "deposed-holder", "holder-changed",
        "lease-unreadable"])
def test_only_the_current_lease_decides_who_writes(ours: int, holder: str,
                                                   generation: int | None, may: bool) -> None:
    assert (fence_refusal(ours, holder, generation, "me") is None) is may


@pytest.mark.parametrize(("failed", "held"), [
    ([], frozenset()),
    (["nlp-team.serve"], frozenset({"nlp-team.serve"})),
    (["nlp-team.serve", "nlp-team.serve", "search-team.rank"],
     frozenset({"nlp-team.serve", "search-team.rank"})),
    (["nlp-team.serve", None], None),
    ([None], None),
], ids=["nothing-failed", "one-workload", "two-workloads", "a-namespace-too",
        "unlabelled"])
def test_a_failed_apply_holds_back_only_its_own_workloads_prune(
        failed: list[str | None], held: frozenset[str] | None) -> None:
    assert prune_held_back(failed) == held
