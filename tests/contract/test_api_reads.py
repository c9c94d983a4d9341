"""Contract: reads. Selectors, pagination and watch, as informers rely on them.

Each test names the kube-apiserver behaviour it pins. Watches go through
kubernetes-asyncio's own `watch.Watch`, the client our informers use.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes_asyncio import client, watch

from clusters.sim import SimCluster, SimFleet
from tests.contract.k8s import configmap, raw

LABELS = {"a": {"tier": "gold", "team": "x"}, "b": {"tier": "silver"}, "c": {}}


async def _labelled(api: client.ApiClient, ns: str) -> client.CoreV1Api:
    core = client.CoreV1Api(api)
    for name, labels in LABELS.items():
        body = configmap(ns, name)
        body["metadata"]["labels"] = labels
        await core.create_namespaced_config_map(ns, body)
    return core


@pytest.mark.parametrize(("selector", "expected"), [
    ("tier=gold", {"a"}),
    ("tier==gold", {"a"}),
    ("tier!=gold", {"b", "c"}),
    ("tier in (gold,silver)", {"a", "b"}),
    ("tier notin (gold)", {"b", "c"}),
    ("team", {"a"}),
    ("!team", {"b", "c"}),
    ("tier=gold,team=x", {"a"}),
], ids=["equals", "double-equals", "not-equals-includes-unlabelled", "in", "notin",
        "exists", "does-not-exist", "and"])
async def test_label_selectors_filter_lists(api: client.ApiClient, ns: str, selector: str,
                                           expected: set[str]) -> None:
    """labelSelector supports =, ==, !=, in, notin, exists and !key; != and notin also
    match objects without the label."""
    core = await _labelled(api, ns)
    got = await core.list_namespaced_config_map(ns, label_selector=selector)
    assert {c.metadata.name for c in got.items} == expected


async def test_a_malformed_label_selector_is_400(api: client.ApiClient, ns: str) -> None:
    """An unparsable selector is 400 BadRequest, not an empty list."""
    status, body, _ = await raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps",
                                query=[("labelSelector", "tier in gold")])
    assert status == 400 and body["reason"] == "BadRequest"


@pytest.mark.parametrize(("selector", "expected"), [
    ("metadata.name=b", {"b"}),
    ("metadata.name!=b", {"a", "c"}),
], ids=["name-equals", "name-not-equals"])
async def test_field_selectors_on_metadata_name(api: client.ApiClient, ns: str,
                                                selector: str, expected: set[str]) -> None:
    """fieldSelector on metadata.name works for every type (=, !=)."""
    core = await _labelled(api, ns)
    got = await core.list_namespaced_config_map(ns, field_selector=selector)
    assert {c.metadata.name for c in got.items} == expected


PARTIAL = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
PARTIAL_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


async def test_a_get_asked_as_partial_object_metadata_answers_the_metadata_only(
        api: client.ApiClient, ns: str) -> None:
    """`Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1` (client-go's
    metadata client): an object's metadata without its data, a list's items likewise;
    its resourceVersion is the object's. A list shape asked of one object is 406; a
    plain media range first is the object itself."""
    core = await _labelled(api, ns)
    full = await core.read_namespaced_config_map("a", ns)
    path = f"/api/v1/namespaces/{ns}/configmaps"
    status, body, _ = await raw(api, "GET", f"{path}/a", headers={"Accept": PARTIAL})
    assert status == 200, body
    assert (body["kind"], body["apiVersion"]) == ("PartialObjectMetadata", "meta.k8s.io/v1")
    assert "data" not in body and body["metadata"]["name"] == "a"
    assert body["metadata"]["resourceVersion"] == full.metadata.resource_version
    assert body["metadata"]["labels"] == LABELS["a"]
    status, body, _ = await raw(api, "GET", path, headers={"Accept": PARTIAL_LIST})
    assert status == 200, body
    assert body["kind"] == "PartialObjectMetadataList" and body["metadata"]["resourceVersion"]
    assert {i["metadata"]["name"] for i in body["items"]} == set(LABELS)
    assert all(i["kind"] == "PartialObjectMetadata" and "data" not in i
               for i in body["items"])
    status, body, _ = await raw(api, "GET", f"{path}/a", headers={"Accept": PARTIAL_LIST})
    assert status == 406 and body["reason"] == "NotAcceptable"
    status, body, _ = await raw(api, "GET", f"{path}/a",
                                headers={"Accept": "application/json," + PARTIAL})
    assert status == 200 and body["kind"] == "ConfigMap" and body["data"] == {"k": "v"}


async def test_field_selector_on_namespace_across_all_namespaces(api: client.ApiClient,
                                                                 ns: str) -> None:
    """fieldSelector metadata.namespace narrows an all-namespaces list."""
    await _labelled(api, ns)
    got = await client.CoreV1Api(api).list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={ns}")
    assert {c.metadata.name for c in got.items} == set(LABELS)


async def test_limit_and_continue_page_through_a_list(api: client.ApiClient, ns: str) -> None:
    """limit/continue: pages in name order, remainingItemCount, no continue on the last."""
    core = client.CoreV1Api(api)
    for i in range(5):
        await core.create_namespaced_config_map(ns, configmap(ns, f"cm-{i}"))
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = await core.list_namespaced_config_map(ns, limit=2, _continue=token)
        seen += [c.metadata.name for c in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 5 - len(seen)
    assert seen == [f"cm-{i}" for i in range(5)] and pages == 3


async def _events(core: client.CoreV1Api, ns: str, n: int, **kw: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    w = watch.Watch()
    async with w:
        async for ev in w.stream(core.list_namespaced_config_map, ns, **kw):
            out.append((ev["type"], ev["object"]))
            if len(out) >= n:
                break
    return out


async def test_watch_without_a_version_starts_with_added_for_existing_objects(
        api: client.ApiClient, ns: str) -> None:
    """A watch with no resourceVersion first sends ADDED for every current object."""
    core = await _labelled(api, ns)
    events = await _events(core, ns, 3, timeout_seconds=5)
    assert [t for t, _ in events] == ["ADDED"] * 3
    assert {o.metadata.name for _, o in events} == set(LABELS)


async def test_watch_from_a_version_replays_later_changes_in_order(api: client.ApiClient,
                                                                   ns: str) -> None:
    """Watching from a list's resourceVersion delivers ADDED, MODIFIED, DELETED after it,
    each carrying the object's new resourceVersion."""
    core = client.CoreV1Api(api)
    rv = (await core.list_namespaced_config_map(ns)).metadata.resource_version
    await core.create_namespaced_config_map(ns, configmap(ns))
    await core.patch_namespaced_config_map("settings", ns, {"data": {"k": "2"}})
    await core.delete_namespaced_config_map("settings", ns)
    events = await _events(core, ns, 3, resource_version=rv, timeout_seconds=5)
    assert [t for t, _ in events] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(o.metadata.resource_version) for _, o in events]
    assert versions == sorted(versions) and versions[0] > int(rv)


async def test_watch_with_a_selector_sees_objects_enter_and_leave_it(api: client.ApiClient,
                                                                     ns: str) -> None:
    """With a label selector, a relabel into the selector is ADDED and out of it DELETED."""
    core = client.CoreV1Api(api)
    rv = (await core.list_namespaced_config_map(ns)).metadata.resource_version
    await core.create_namespaced_config_map(ns, configmap(ns))
    await core.patch_namespaced_config_map("settings", ns,
                                           {"metadata": {"labels": {"tier": "gold"}}})
    await core.patch_namespaced_config_map("settings", ns,
                                           {"metadata": {"labels": {"tier": "lead"}}})
    events = await _events(core, ns, 2, resource_version=rv, label_selector="tier=gold",
                           timeout_seconds=5)
    assert [t for t, _ in events] == ["ADDED", "DELETED"]


async def test_streaming_list_ends_its_initial_events_with_a_bookmark(
        api: client.ApiClient, ns: str) -> None:
    """sendInitialEvents=true (client-go's streaming list, kubectl wait/get -w): the
    current objects as ADDED, then a BOOKMARK annotated k8s.io/initial-events-end."""
    await _labelled(api, ns)
    status, text, _ = await raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps", query=[
        ("watch", "true"), ("sendInitialEvents", "true"), ("allowWatchBookmarks", "true"),
        ("resourceVersionMatch", "NotOlderThan"), ("timeoutSeconds", "1")])
    assert status == 200
    events = [json.loads(line) for line in str(text).splitlines() if line]
    assert [e["type"] for e in events[:4]] == ["ADDED"] * 3 + ["BOOKMARK"]
    mark = events[3]["object"]["metadata"]
    assert mark["annotations"]["k8s.io/initial-events-end"] == "true"


async def _quiet_watch(api: client.ApiClient, ns: str, seconds: int) -> list[dict[str, Any]]:
    core = client.CoreV1Api(api)
    rv = (await core.list_namespaced_config_map(ns)).metadata.resource_version
    status, text, _ = await raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps", query=[
        ("watch", "true"), ("resourceVersion", rv), ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", str(seconds))])
    assert status == 200
    if isinstance(text, dict):  # one event alone is a JSON document: `raw` decoded it
        return [text]
    lines = [line for line in (text if isinstance(text, str) else "").splitlines() if line]
    return [json.loads(line) for line in lines]


async def test_watch_sends_bookmarks_when_allowed(api: client.ApiClient, ns: str,
                                                  sim: SimFleet) -> None:
    """allowWatchBookmarks=true: BOOKMARK events carry only a resourceVersion. (The
    fixture shortens the simulator's period to 0.2 s; a real server's is a minute, so
    this one needs the simulator.)"""
    events = await _quiet_watch(api, ns, 3)
    assert {e["type"] for e in events} == {"BOOKMARK"}
    assert len(events) >= 2
    assert all(e["object"]["metadata"]["resourceVersion"] for e in events)


async def test_watch_bookmarks_come_a_minute_apart_and_before_the_deadline(
        api: client.ApiClient, ns: str, cluster: SimCluster) -> None:
    """At kube-apiserver's own period (`defaultBookmarkFrequency`, a minute) a quiet
    3 s watch gets one BOOKMARK, the one 2 s before its deadline, and a 2 s watch none
    (`cacheWatcher.nextBookmarkTime`)."""
    was, cluster.bookmark_seconds = cluster.bookmark_seconds, 60.0
    try:
        assert [e["type"] for e in await _quiet_watch(api, ns, 3)] == ["BOOKMARK"]
        assert await _quiet_watch(api, ns, 2) == []
    finally:
        cluster.bookmark_seconds = was


async def test_watch_ends_cleanly_after_timeout_seconds(api: client.ApiClient,
                                                        ns: str) -> None:
    """timeoutSeconds ends the stream with a clean chunked EOF, no error event."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    events = await _events(client.CoreV1Api(api), ns, 100, timeout_seconds=1)
    assert events == [] and 0.8 < loop.time() - start < 5


async def test_watch_from_a_version_older_than_the_history_is_410_expired(
        api: client.ApiClient, ns: str, sim: SimFleet) -> None:
    """A watch from a compacted resourceVersion fails with 410 Expired (an ERROR event
    carrying the Status), which tells informers to re-list."""
    core = client.CoreV1Api(api)
    rv = (await core.list_namespaced_config_map(ns)).metadata.resource_version
    await core.create_namespaced_config_map(ns, configmap(ns))
    sim.clusters["contract-1"].faults.expire_watches()
    with pytest.raises(client.ApiException) as err:
        await _events(core, ns, 1, resource_version=rv, timeout_seconds=5)
    assert err.value.status == 410


async def test_a_continue_token_older_than_the_history_is_410_expired(
        api: client.ApiClient, ns: str, sim: SimFleet) -> None:
    """A continue token whose version was compacted away: 410 Expired, start over."""
    core = client.CoreV1Api(api)
    for i in range(3):
        await core.create_namespaced_config_map(ns, configmap(ns, f"cm-{i}"))
    page = await core.list_namespaced_config_map(ns, limit=1)
    await core.create_namespaced_config_map(ns, configmap(ns, "later"))
    sim.clusters["contract-1"].faults.expire_watches()
    with pytest.raises(client.ApiException) as err:
        await core.list_namespaced_config_map(ns, limit=1, _continue=page.metadata._continue)
    assert err.value.status == 410
    assert json.loads(err.value.body)["reason"] == "Expired"
