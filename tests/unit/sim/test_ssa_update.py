"""`ssa.record_update` and the node Lease renewal give, byte for byte, what the full
computations they replaced give: every managedFields entry decoded, moved and encoded
again, and a deep copy of the object."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusters.sim import leases, ssa
from clusters.sim.ssa import Path, from_fields_v1, record_update, to_fields_v1

# ------------------------------------------------------------------ the old algorithm

Entry = dict[str, Any]


def old_entries(obj: Mapping[str, Any] | None) -> list[tuple[Entry, set[Path]]]:
    meta = (obj or {}).get("metadata")
    raw = meta.get("managedFields") if isinstance(meta, Mapping) else None
    out: list[tuple[Entry, set[Path]]] = []
    for e in raw or []:
        if isinstance(e, Mapping) and e.get("manager") is not None:
            fields = e.get("fieldsV1")
            out.append((dict(e), from_fields_v1(fields) if isinstance(fields, Mapping)
                        else set()))
    return out


def old_with_managed(obj: dict[str, Any], entries: list[tuple[Entry, set[Path]]]
                     ) -> dict[str, Any]:
    meta = dict(obj.get("metadata") or {})
    encoded = []
    for entry, paths in entries:
        if not paths:
            continue
        e = dict(entry)
        e["fieldsType"] = "FieldsV1"
        e["fieldsV1"] = to_fields_v1(paths)
        encoded.append(e)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)
    obj["metadata"] = meta
    return obj


def old_base_entries(old: Mapping[str, Any] | None, new: Mapping[str, Any]
                     ) -> list[tuple[Entry, set[Path]]]:
    def managed(o: Mapping[str, Any] | None) -> Any:
        meta = (o or {}).get("metadata")
        return meta.get("managedFields") if isinstance(meta, Mapping) else None
    sent = managed(new)
    if sent == [{}]:
        return []
    if sent and sent != managed(old):
        return old_entries(new)
    return old_entries(old)


def old_record_update(old: dict[str, Any] | None, new: dict[str, Any], manager: str, *,
                      now: str, subresource: str | None = None) -> dict[str, Any]:
    """`record_update` as it was: decode all, move, encode all, deep copy."""
    before = ssa._fields(old, update=True, subresource=subresource)
    after = ssa._fields(new, update=True, subresource=subresource)
    added = set(after) - set(before)
    removed = set(before) - set(after)
    modified = {p for p in set(after) & set(before)
                if after[p] is not ssa._MISSING and after[p] != before[p]}
    changed = added | modified
    result: list[tuple[Entry, set[Path]]] = []
    found = False
    for entry, paths in old_base_entries(old, new):
        if entry.get("manager") == manager and entry.get("operation") == "Update" \
                and entry.get("subresource") == subresource:
            found = True
            grown = (paths | changed) - removed
            if grown - paths:
                entry = {**entry, "time": now}
            entry["apiVersion"] = str(new.get("apiVersion", entry.get("apiVersion", "")))
            result.append((entry, grown))
        else:
            result.append((entry, paths - changed - removed))
    if not found and changed:
        entry = {"manager": manager, "operation": "Update",
                 "apiVersion": str(new.get("apiVersion", "")), "time": now}
        if subresource:
            entry["subresource"] = subresource
        result.append((entry, set(changed)))
    return old_with_managed(copy.deepcopy(new), result)


# ------------------------------------------------------------------ objects and writes

NAMES = st.sampled_from(["app", "side", "init"])
VALUES = st.sampled_from(["a", "b", "1", "2"])
env = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["A", "B", "C"]),
                                      "value": VALUES}),
               max_size=3, unique_by=lambda e: e["name"])
container = st.fixed_dictionaries(
    {"name": NAMES, "image": VALUES},
    optional={"env": env, "args": st.lists(VALUES, max_size=2),
              "resources": st.fixed_dictionaries({}, optional={
                  "requests": st.dictionaries(st.sampled_from(["cpu", "memory"]), VALUES,
                                              max_size=2)}),
              "ports": st.lists(st.fixed_dictionaries({"containerPort": st.sampled_from(
                  [80, 8080])}), max_size=2, unique_by=lambda p: p["containerPort"])})
spec = st.fixed_dictionaries({}, optional={
    "replicas": st.integers(0, 2),
    "paused": st.booleans(),
    "template": st.fixed_dictionaries({"spec": st.fixed_dictionaries({
        "containers": st.lists(container, min_size=1, max_size=2,
                               unique_by=lambda c: c["name"])})}, optional={
        "metadata": st.fixed_dictionaries({"labels": st.dictionaries(
            st.sampled_from(["app", "tier"]), VALUES, max_size=2)})}),
})
status = st.fixed_dictionaries({}, optional={
    "replicas": st.integers(0, 2), "readyReplicas": st.integers(0, 2),
    "conditions": st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["Available", "Progressing"]), "status": VALUES},
        optional={"lastUpdateTime": VALUES}), max_size=2, unique_by=lambda c: c["type"])})
metadata = st.fixed_dictionaries({}, optional={
    "labels": st.dictionaries(st.sampled_from(["app", "team", "x"]), VALUES, max_size=3),
    "annotations": st.dictionaries(st.sampled_from(["note", "rev"]), VALUES, max_size=2),
    "finalizers": st.lists(st.sampled_from(["a/b", "c/d"]), max_size=2, unique=True)})
MANAGERS = st.sampled_from(["aifleet", "kube-controller-manager", "kubectl-edit",
                            "kubelet"])


@st.composite
def fields_tree(draw: st.DrawFn) -> Any:
    """A FieldsV1 tree as a client might send it: not necessarily canonical (unsorted
    keys, `.` on a leaf, `null` leaves), or not a tree at all."""
    paths = draw(st.lists(st.lists(st.sampled_from(
        ["f:spec", "f:replicas", "f:status", "f:metadata", "f:labels", "f:x",
         'k:{"name":"app"}', "."]), min_size=1, max_size=4), max_size=5))
    root: dict[str, Any] = {}
    for p in paths:
        node = root
        for element in p:
            node = node.setdefault(element, {})
    if draw(st.booleans()):
        root = dict(reversed(list(root.items())))
    return draw(st.sampled_from([root, {"f:spec": None}, "junk", {}]))


client_entry = st.fixed_dictionaries(
    {"manager": st.one_of(MANAGERS, st.none())},
    optional={"operation": st.sampled_from(["Apply", "Update"]),
              "apiVersion": st.sampled_from(["apps/v1", "v1"]), "time": VALUES,
              "subresource": st.just("status"), "fieldsType": st.just("FieldsV1"),
              "fieldsV1": fields_tree()})

write = st.fixed_dictionaries({
    "manager": MANAGERS,
    "subresource": st.sampled_from([None, None, "status"]),
    "kind": st.sampled_from(["apply", "update"]),
    # None: keep the live part as it is; else the part written
    "metadata": st.one_of(st.none(), metadata),
    "spec": st.one_of(st.none(), spec),
    "status": st.one_of(st.none(), status),
    "sent": st.one_of(st.none(), st.sampled_from([[], [{}]]), st.just("echo"),
                      st.just("claim"), st.lists(client_entry, max_size=3)),
    "now": VALUES,
})


def unsorted(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: unsorted(v) for k, v in reversed(tree.items())}


def claims(data: st.DataObject, live: dict[str, Any] | None,
           obj: dict[str, Any]) -> list[Entry]:
    """managedFields a client sends that give managers some of the object's real paths
    (members of maps and list items included), encoded in or out of order."""
    paths = sorted(set(ssa._fields(live, update=True)) | set(ssa._fields(obj, update=True))
                   | set(ssa._fields(obj, update=True, subresource="status")))
    out = []
    for _ in range(data.draw(st.integers(1, 3))):
        owned = data.draw(st.lists(st.sampled_from(paths), max_size=8)) if paths else []
        tree = to_fields_v1(owned)
        if data.draw(st.booleans()):
            tree = unsorted(tree)
        e: Entry = {"manager": data.draw(MANAGERS),
                    "operation": data.draw(st.sampled_from(["Apply", "Update"])),
                    "apiVersion": "apps/v1", "time": "t", "fieldsType": "FieldsV1",
                    "fieldsV1": tree}
        if data.draw(st.booleans()):
            e["subresource"] = "status"
        out.append(e)
    return out


def body(live: dict[str, Any] | None, w: dict[str, Any]) -> dict[str, Any]:
    base = copy.deepcopy(live) if live is not None else {}
    meta = {"name": "web", "namespace": "team-a",
            **(w["metadata"] if w["metadata"] is not None
               else {k: v for k, v in (base.get("metadata") or {}).items()
                     if k in ("labels", "annotations", "finalizers")})}
    if w["sent"] == "echo" and live is not None and "managedFields" in live["metadata"]:
        meta["managedFields"] = copy.deepcopy(live["metadata"]["managedFields"])
    elif w["sent"] not in (None, "echo"):
        meta["managedFields"] = copy.deepcopy(w["sent"])
    obj: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta}
    for part in ("spec", "status"):
        value = w[part] if w[part] is not None else base.get(part)
        if value is not None:
            obj[part] = copy.deepcopy(value)
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(obj)  # key order kept: byte-identical means in the same order


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(write, min_size=1, max_size=6), st.data())
def test_record_update_answers_what_decoding_and_encoding_every_entry_answers(
        writes: list[dict[str, Any]], data: st.DataObject) -> None:
    live: dict[str, Any] | None = None
    for w in writes:
        new = body(live, w)
        if w["sent"] == "claim":
            new["metadata"]["managedFields"] = claims(data, live, new)
        if w["kind"] == "apply" and live is not None and w["sent"] is None:
            # server-side apply between updates: the entries the store keeps
            new["metadata"].pop("managedFields", None)
            live = ssa.apply(live, new, w["manager"], force=True, now=w["now"],
                             subresource=w["subresource"])
            continue
        before_live = dumps(live)
        expected = old_record_update(copy.deepcopy(live), copy.deepcopy(new), w["manager"],
                                     now=w["now"], subresource=w["subresource"])
        got = record_update(live, new, w["manager"], now=w["now"],
                            subresource=w["subresource"])
        assert dumps(got) == dumps(expected)
        assert dumps(live) == before_live  # the stored object is left as it was
        live = got


@settings(max_examples=200, deadline=None)
@given(st.lists(write, min_size=1, max_size=6))
def test_every_stored_fieldsv1_is_its_own_canonical_encoding(
        writes: list[dict[str, Any]]) -> None:
    """What `record_update` relies on to keep an unchanged entry's stored FieldsV1:
    whatever the writes, the entries it and `apply` store re-encode to themselves."""
    live: dict[str, Any] | None = None
    for w in writes:
        new = body(live, w)
        if w["kind"] == "apply" and live is not None:
            new["metadata"].pop("managedFields", None)
            live = ssa.apply(live, new, w["manager"], force=True, now=w["now"])
        else:
            live = record_update(live, new, w["manager"], now=w["now"],
                                 subresource=w["subresource"])
        for e in live["metadata"].get("managedFields") or []:
            tree = e["fieldsV1"]
            assert dumps(to_fields_v1(from_fields_v1(tree))) == dumps(tree)


def test_a_status_write_keeps_the_appliers_fieldsv1_without_encoding_it_again() -> None:
    applied = ssa.apply(None, {"apiVersion": "apps/v1", "kind": "Deployment",
                               "metadata": {"name": "web", "namespace": "a"},
                               "spec": {"replicas": 1, "paused": False}},
                        "aifleet", force=True, now="t0")
    tree = applied["metadata"]["managedFields"][0]["fieldsV1"]
    written = record_update(applied, {**applied, "status": {"replicas": 1}},
                            "kube-controller-manager", now="t1", subresource="status")
    mine, theirs = written["metadata"]["managedFields"]
    assert mine["fieldsV1"] is tree
    assert theirs["manager"] == "kube-controller-manager"
    assert theirs["fieldsV1"] == {"f:status": {"f:replicas": {}}}


# ------------------------------------------------------------------ node leases


@given(st.dictionaries(st.sampled_from(["holderIdentity", "leaseDurationSeconds",
                                        "renewTime", "acquireTime"]), VALUES),
       metadata, VALUES)
def test_a_renewed_lease_is_the_deep_copy_with_renew_time_set(
        lease_spec: dict[str, Any], meta: dict[str, Any], now: str) -> None:
    live: dict[str, Any] = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "n", "namespace": leases.NAMESPACE, **meta,
                         "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:spec": {}}}]},
            "spec": lease_spec}
    before = dumps(live)
    expected = copy.deepcopy(live)
    expected["spec"]["renewTime"] = now
    got = leases.renewed(live, now)
    assert dumps(got) == dumps(expected)
    assert dumps(live) == before
    assert got["metadata"] is not live["metadata"]  # the store stamps it
