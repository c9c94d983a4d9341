"""REST paths to resources, list pages, and fault switches: the server's plumbing."""

from __future__ import annotations

import pytest

from clusters.sim.api import parse_path
from clusters.sim.errors import SimError
from clusters.sim.faults import Faults
from clusters.sim.listing import list_response
from clusters.sim.resources import BY_KIND
from clusters.sim.store import Store


@pytest.mark.parametrize(("path", "expected"), [
    ("/api/v1/namespaces", ("Namespace", None, None, None)),
    ("/api/v1/namespaces/a", ("Namespace", None, "a", None)),
    ("/api/v1/namespaces/a/status", ("Namespace", None, "a", "status")),
    ("/api/v1/namespaces/a/pods", ("Pod", "a", None, None)),
    ("/api/v1/namespaces/a/pods/p/status", ("Pod", "a", "p", "status")),
    ("/api/v1/pods", ("Pod", None, None, None)),
    ("/api/v1/nodes/n", ("Node", None, "n", None)),
    ("/apis/batch/v1/namespaces/a/jobs/j", ("Job", "a", "j", None)),
    ("/apis/apps/v1/namespaces/a/deployments/d/scale", ("Deployment", "a", "d", "scale")),
    ("/apis/coordination.k8s.io/v1/namespaces/a/leases", ("Lease", "a", None, None)),
], ids=["namespaces", "namespace", "namespace-status", "pods", "pod-status",
        "all-namespaces", "node", "job", "scale", "leases"])
def test_paths_resolve_to_resource_namespace_name_subresource(
        path: str, expected: tuple[str, str | None, str | None, str | None]) -> None:
    parsed = parse_path(path)
    assert parsed is not None
    res, ns, name, sub = parsed
    assert (res.kind, ns, name, sub) == expected


@pytest.mark.parametrize("path", [
    "/api/v2/pods", "/apis/batch/v2/jobs", "/api/v1/namespaces/a/nodes",
    "/api/v1/namespaces/a/pods/p/exec", "/api/v1/widgets", "/metrics"],
    ids=["bad-version", "bad-group-version", "cluster-scoped-in-namespace",
         "unserved-subresource", "unknown-resource", "not-api"])
def test_unserved_paths_resolve_to_nothing(path: str) -> None:
    assert parse_path(path) is None


def _store_with(n: int) -> Store:
    s = Store("t")
    s.create(BY_KIND["Namespace"], {"metadata": {"name": "a"}})
    for i in range(n):
        s.create(BY_KIND["ConfigMap"], {"metadata": {"name": f"c{i}", "namespace": "a"}})
    return s


def test_pages_cover_the_list_once_in_key_order() -> None:
    s = _store_with(5)
    res = BY_KIND["ConfigMap"]
    names: list[str] = []
    query: dict[str, str] = {"limit": "2"}
    while True:
        page = list_response(s, res, "a", None, query)
        names += [o["metadata"]["name"] for o in page["items"]]
        assert all("kind" not in o for o in page["items"])
        token = page["metadata"].get("continue")
        if not token:
            break
        query = {"limit": "2", "continue": token}
    assert names == [f"c{i}" for i in range(5)]


def test_a_garbled_continue_token_is_a_bad_request() -> None:
    with pytest.raises(SimError) as err:
        list_response(_store_with(1), BY_KIND["ConfigMap"], "a", None,
                      {"continue": "%%%not-base64"})
    assert err.value.code == 400


def test_fail_next_counts_down_per_prefix_then_clears() -> None:
    f = Faults()
    f.fail_next(2, 503, prefix="/apis/batch")
    assert f.error_for("/api/v1/pods") is None
    codes = [e.code if (e := f.error_for("/apis/batch/v1/jobs")) else 200 for _ in range(3)]
    assert codes == [503, 503, 200]


def test_429_carries_retry_after_in_header_and_details() -> None:
    f = Faults()
    f.fail_next(1, 429, retry_after=7)
    err = f.error_for("/")
    assert err is not None and err.headers == {"Retry-After": "7"}
    assert err.status()["details"] == {"retryAfterSeconds": 7}


def test_admin_configure_sets_the_switches() -> None:
    f = Faults()
    done = f.configure({"latency": 0.25, "prefix": "/apis", "dropNext": 2,
                        "failRate": {"rate": 1.0, "status": 502}})
    assert done == {"latency": 0.25, "dropNext": 2, "failRate": {"rate": 1.0, "status": 502}}
    assert f.delay_for("/apis/batch/v1") == 0.25 and f.delay_for("/api/v1") == 0.0
    assert f.take_drop() and f.take_drop() and not f.take_drop()
    err = f.error_for("/x")
    assert err is not None and err.code == 502
    f.configure({"clear": True})
    assert f.error_for("/x") is None
