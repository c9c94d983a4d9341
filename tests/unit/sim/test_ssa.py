"""Server-side apply and managedFields, pinned to the Kubernetes "Server-Side Apply" docs:
field management, conflicts, merge strategy, transferring ownership, and the rule that a
no-op apply changes nothing."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusters.sim.errors import ApplyConflict
from clusters.sim.ssa import apply, format_path, from_fields_v1, record_update, to_fields_v1
from fleet.drift import diff

T0, T1, T2 = "2026-11-23T10:00:00Z", "2026-11-23T11:00:00Z", "2026-11-23T12:00:00Z"


def deployment(image: str = "app:1", *, replicas: int = 2, env: list[Any] | None = None,
               containers: list[Any] | None = None, **spec: Any) -> dict[str, Any]:
    app: dict[str, Any] = {"name": "app", "image": image,
                           "ports": [{"containerPort": 80}]}
    if env is not None:
        app["env"] = env
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "team-a", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": containers or [app], **spec}}}}


def configmap(**data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": "default"}, "data": data}


def entry(obj: dict[str, Any], manager: str, operation: str = "Apply") -> dict[str, Any]:
    found = [e for e in obj["metadata"].get("managedFields", [])
             if e["manager"] == manager and e["operation"] == operation]
    assert len(found) == 1, f"no single {operation} entry for {manager}"
    return found[0]


def managers(obj: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["manager"], e["operation"]) for e in obj["metadata"].get("managedFields", [])]


def kubectl_edit(live: dict[str, Any], change: Any, now: str = T1) -> dict[str, Any]:
    new = copy.deepcopy(live)
    change(new)
    return record_update(live, new, "kubectl-edit", now=now)


def set_image(image: str) -> Any:
    def change(o: dict[str, Any]) -> None:
        o["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return change


# ------------------------------------------------------------------ field sets


def test_apply_creates_the_object_with_the_documented_fieldsv1_shape() -> None:
    live = apply(None, deployment(), "aifleet", force=False, now=T0)
    e = entry(live, "aifleet")
    assert (e["operation"], e["fieldsType"], e["apiVersion"], e["time"]) == \
        ("Apply", "FieldsV1", "apps/v1", T0)
    # As a real API server records it: list items by their keys with ".", key fields
    # included, protocol defaulted in the port's key, the atomic selector as one leaf,
    # and no name, namespace, apiVersion or kind.
    assert e["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {'k:{"name":"app"}': {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {
                        ".": {}, "f:containerPort": {}}}}}}}}}
    assert live["spec"] == deployment()["spec"]


def test_fieldsv1_round_trips_through_the_path_set() -> None:
    tree = {"f:data": {".": {}, "f:a": {}}, "f:spec": {"f:c": {'k:{"name":"x"}': {
        ".": {}, "f:name": {}}}}, "f:metadata": {"f:finalizers": {'v:"a"': {}}}}
    assert to_fields_v1(from_fields_v1(tree)) == tree


@pytest.mark.parametrize(("path", "text"), [
    (("f:spec", "f:replicas"), ".spec.replicas"),
    (("f:spec", "f:containers", 'k:{"name":"app"}', "f:image"),
     '.spec.containers[name="app"].image'),
    (("f:ports", 'k:{"containerPort":80,"protocol":"TCP"}'),
     '.ports[containerPort=80,protocol="TCP"]'),
    (("f:metadata", "f:finalizers", 'v:"a"'), '.metadata.finalizers[="a"]'),
], ids=["field", "keyed-item", "two-keys", "set-member"])
def test_conflict_paths_are_spelled_like_the_api_server(path: tuple[str, ...],
                                                        text: str) -> None:
    assert format_path(path) == text


def test_status_and_server_metadata_are_never_owned() -> None:
    cfg = configmap(a="1")
    cfg["metadata"].update(uid="u", resourceVersion="5", generation=3,
                           creationTimestamp=T0)
    cfg["status"] = {"phase": "x"}
    live = apply(None, cfg, "m", force=False, now=T0)
    assert entry(live, "m")["fieldsV1"] == {"f:data": {"f:a": {}}}
    assert "status" not in live


# ------------------------------------------------------------------ idempotence


def test_applying_the_same_configuration_twice_changes_nothing() -> None:
    live = apply(None, deployment(), "aifleet", force=False, now=T0)
    again = apply(live, deployment(), "aifleet", force=False, now=T1)
    assert again == live
    assert entry(again, "aifleet")["time"] == T0, "a no-op apply keeps managedFields time"


def test_reapply_keeps_server_defaults_and_is_still_a_no_op() -> None:
    live = apply(None, deployment(), "aifleet", force=False, now=T0)
    # The server defaults fields nobody applied; they belong to no manager.
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    assert apply(live, deployment(), "aifleet", force=False, now=T1) == live


labels = st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True),
                         st.from_regex(r"[a-z0-9]{0,5}", fullmatch=True), max_size=4)


@settings(max_examples=150, deadline=None)
@given(labels, labels, labels)
def test_apply_is_idempotent_for_any_configuration(data0: dict[str, str],
                                                   data1: dict[str, str],
                                                   lab: dict[str, str]) -> None:
    live = apply(None, configmap(**data0), "first", force=False, now=T0)
    cfg = configmap(**data1)
    cfg["metadata"]["labels"] = lab
    once = apply(live, cfg, "second", force=True, now=T1)
    assert apply(once, cfg, "second", force=False, now=T2) == once
    assert all(once["data"][k] == v for k, v in data1.items())


# ------------------------------------------------------------------ conflicts


def test_changing_a_field_another_manager_owns_is_a_conflict_naming_field_and_owner() -> None:
    live = apply(None, deployment(), "aifleet", force=False, now=T0)
    edited = kubectl_edit(live, set_image("app:hotfix"))
    with pytest.raises(ApplyConflict) as err:
        apply(edited, deployment("app:2"), "aifleet", force=False, now=T2)
    assert err.value.conflicts == [
        ('.spec.template.spec.containers[name="app"].image', "kubectl-edit")]
    # kube-apiserver names an Update manager with the version it wrote.
    assert err.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: '
        '.spec.template.spec.containers[name="app"].image')
    assert err.value.status()["details"]["causes"][0]["message"] == \
        'conflict with "kubectl-edit" using apps/v1'


def test_force_takes_ownership_from_the_other_manager() -> None:
    live = apply(None, deployment(), "aifleet", force=False, now=T0)
    edited = kubectl_edit(live, set_image("app:hotfix"))
    forced = apply(edited, deployment("app:2"), "aifleet", force=True, now=T2)
    assert forced["spec"]["template"]["spec"]["containers"][0]["image"] == "app:2"
    # kubectl-edit owned only the image: it owns nothing now, so its entry goes.
    assert managers(forced) == [("aifleet", "Apply")]
    assert entry(forced, "aifleet")["time"] == T2


def test_reapplying_the_old_value_after_an_edit_also_conflicts() -> None:
    live = apply(None, deployment(), "aifleet", force=False, now=T0)
    edited = kubectl_edit(live, set_image("app:hotfix"))
    with pytest.raises(ApplyConflict):
        apply(edited, deployment("app:1"), "aifleet", force=False, now=T2)


def test_two_appliers_with_equal_values_share_a_field_and_then_conflict_on_change() -> None:
    live = apply(None, configmap(a="1"), "one", force=False, now=T0)
    shared = apply(live, configmap(a="1"), "two", force=False, now=T1)
    assert entry(shared, "one")["fieldsV1"] == entry(shared, "two")["fieldsV1"] == \
        {"f:data": {"f:a": {}}}
    with pytest.raises(ApplyConflict) as err:
        apply(shared, configmap(a="2"), "one", force=False, now=T2)
    assert err.value.conflicts == [(".data.a", "two")]
    # An applier is named alone, without a version.
    assert err.value.message == 'Apply failed with 1 conflict: conflict with "two": .data.a'


def test_a_field_nobody_owns_can_be_changed_without_conflict() -> None:
    live = apply(None, deployment(), "aifleet", force=False, now=T0)
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    cfg = deployment()
    cfg["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    out = apply(live, cfg, "aifleet", force=False, now=T1)
    assert out["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == \
        "IfNotPresent"


# ------------------------------------------------------------------ merge strategy


def test_keyed_list_items_of_other_managers_are_kept() -> None:
    live = apply(None, deployment(), "aifleet", force=False, now=T0)
    sidecar = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "team-a"},
               "spec": {"template": {"spec": {"containers": [
                   {"name": "mesh", "image": "proxy:1"}]}}}}
    both = apply(live, sidecar, "injector", force=False, now=T1)
    names = [c["name"] for c in both["spec"]["template"]["spec"]["containers"]]
    assert names == ["app", "mesh"]
    assert apply(both, deployment(), "aifleet", force=False, now=T2) == both


def test_env_items_merge_by_name_and_are_owned_separately() -> None:
    live = apply(None, deployment(env=[{"name": "A", "value": "1"}]), "aifleet",
                 force=False, now=T0)
    edited = kubectl_edit(live, lambda o: o["spec"]["template"]["spec"]["containers"][0][
        "env"].append({"name": "DEBUG", "value": "1"}))
    # Our own env item is still ours; the added one is kubectl-edit's.
    out = apply(edited, deployment("app:2", env=[{"name": "A", "value": "2"}]), "aifleet",
                force=False, now=T2)
    env = out["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "2"}, {"name": "DEBUG", "value": "1"}]


def test_atomic_lists_are_replaced_whole_and_owned_as_one_field() -> None:
    tol1 = [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]
    live = apply(None, deployment(tolerations=tol1), "aifleet", force=False, now=T0)
    out = apply(live, deployment(tolerations=[{"key": "c", "operator": "Exists"}]), "aifleet",
                force=False, now=T1)
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "c",
                                                               "operator": "Exists"}]
    assert entry(out, "aifleet")["fieldsV1"]["f:spec"]["f:template"]["f:spec"][
        "f:tolerations"] == {}


# ------------------------------------------------------------------ removal


def test_a_field_the_manager_stops_applying_is_removed() -> None:
    live = apply(None, configmap(a="1", b="2"), "m", force=False, now=T0)
    out = apply(live, configmap(a="1"), "m", force=False, now=T1)
    assert out["data"] == {"a": "1"}
    assert entry(out, "m")["fieldsV1"] == {"f:data": {"f:a": {}}}


def test_a_dropped_field_another_manager_owns_is_kept() -> None:
    live = apply(None, configmap(a="1", b="2"), "one", force=False, now=T0)
    shared = apply(live, configmap(b="2"), "two", force=False, now=T1)
    out = apply(shared, configmap(a="1"), "one", force=False, now=T2)
    assert out["data"] == {"a": "1", "b": "2"}
    assert entry(out, "two")["fieldsV1"] == {"f:data": {"f:b": {}}}


def test_a_dropped_container_is_removed_from_the_list() -> None:
    two = [{"name": "app", "image": "a"}, {"name": "old", "image": "o"}]
    live = apply(None, deployment(containers=two), "aifleet", force=False, now=T0)
    out = apply(live, deployment(containers=two[:1]), "aifleet", force=False, now=T1)
    assert out["spec"]["template"]["spec"]["containers"] == two[:1]


def test_a_dropped_container_keeps_the_fields_another_manager_set_in_it() -> None:
    two = [{"name": "app", "image": "a"}, {"name": "old", "image": "o"}]
    live = apply(None, deployment(containers=two), "aifleet", force=False, now=T0)
    edited = kubectl_edit(live, lambda o: o["spec"]["template"]["spec"]["containers"][1]
                          .update(args=["--debug"]))
    out = apply(edited, deployment(containers=two[:1]), "aifleet", force=False, now=T2)
    assert out["spec"]["template"]["spec"]["containers"][1] == {"name": "old",
                                                                "args": ["--debug"]}


# ------------------------------------------------------------------ updates


def test_an_update_takes_the_changed_field_from_the_applier() -> None:
    live = apply(None, deployment(), "aifleet", force=False, now=T0)
    edited = kubectl_edit(live, set_image("app:hotfix"))
    assert entry(edited, "kubectl-edit", "Update")["fieldsV1"] == {
        "f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"app"}': {
            "f:image": {}}}}}}}
    mine = entry(edited, "aifleet")["fieldsV1"]["f:spec"]["f:template"]["f:spec"][
        "f:containers"]['k:{"name":"app"}']
    assert "f:image" not in mine and "f:name" in mine
    assert entry(edited, "aifleet")["time"] == T0


def test_drift_detection_names_the_manager_that_edited_the_field() -> None:
    live = apply(None, deployment(), "aifleet", force=False, now=T0)
    edited = kubectl_edit(live, set_image("app:hotfix"))
    drifted = diff(deployment(), edited)
    assert [(d.path, d.live, d.manager) for d in drifted] == [
        ("spec.template.spec.containers[name=app].image", "app:hotfix", "kubectl-edit")]


def test_create_by_update_records_maps_with_their_own_node() -> None:
    created = record_update(None, configmap(a="1"), "kubectl-create", now=T0)
    e = entry(created, "kubectl-create", "Update")
    assert e["fieldsV1"] == {"f:data": {".": {}, "f:a": {}}}
    assert e["time"] == T0


def test_update_time_moves_only_when_the_field_set_grows() -> None:
    created = record_update(None, configmap(a="1"), "ctl", now=T0)
    changed = copy.deepcopy(created)
    changed["data"]["a"] = "2"
    same_set = record_update(created, changed, "ctl", now=T1)
    assert entry(same_set, "ctl", "Update")["time"] == T0
    grown = copy.deepcopy(same_set)
    grown["data"]["b"] = "3"
    assert entry(record_update(same_set, grown, "ctl", now=T2), "ctl", "Update")["time"] == T2


def test_an_update_that_changes_nothing_records_no_manager() -> None:
    live = apply(None, configmap(a="1"), "m", force=False, now=T0)
    out = record_update(live, copy.deepcopy(live), "kubectl-edit", now=T1)
    assert managers(out) == [("m", "Apply")]


def test_status_changes_are_not_recorded_as_field_ownership() -> None:
    live = apply(None, configmap(a="1"), "m", force=False, now=T0)
    new = copy.deepcopy(live)
    new["status"] = {"x": 1}
    assert managers(record_update(live, new, "ctl", now=T1)) == [("m", "Apply")]


def test_removing_a_field_out_of_band_drops_it_from_every_manager() -> None:
    live = apply(None, configmap(a="1", b="2"), "m", force=False, now=T0)
    new = copy.deepcopy(live)
    del new["data"]["b"]
    out = record_update(live, new, "kubectl-edit", now=T1)
    assert entry(out, "m")["fieldsV1"] == {"f:data": {"f:a": {}}}
    assert ("kubectl-edit", "Update") not in managers(out)


def test_apply_never_mutates_the_live_object_it_is_given() -> None:
    live = apply(None, configmap(a="1", b="2"), "m", force=False, now=T0)
    live["metadata"]["labels"] = {"x": "1"}
    before = copy.deepcopy(live)
    apply(live, configmap(a="1"), "m", force=False, now=T1)
    assert live == before


@pytest.mark.parametrize(("first", "then", "gone"), [
    ({"metadata": {"labels": {"a": "1"}}}, {}, ("metadata", "labels")),
    ({"spec": {"containers": [{"name": "app", "env": [{"name": "A", "value": "1"}]}]}},
     {"spec": {"containers": [{"name": "app"}]}}, ("spec", "containers", 0, "env")),
], ids=["last-label", "last-env-var"])
def test_a_map_or_list_emptied_by_removal_is_dropped_as_omitempty_does(
        first: dict[str, Any], then: dict[str, Any], gone: tuple[Any, ...]) -> None:
    base = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"}}
    def cfg(extra: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(base)
        for k, v in extra.items():
            out[k] = {**out.get(k, {}), **v}
        return out
    live = apply(None, cfg(first), "m", force=False, now=T0)
    out = apply(live, cfg(then), "m", force=False, now=T1)
    node: Any = out
    for part in gone[:-1]:
        node = node[part]
    assert gone[-1] not in node


@pytest.mark.parametrize(("sent", "want"), [
    ([{}], [("ctl", "Update")]),
    ([], [("m", "Apply"), ("ctl", "Update")]),
    (None, [("m", "Apply"), ("ctl", "Update")]),
], ids=["single-empty-entry-resets", "empty-list-keeps", "absent-keeps"])
def test_clearing_managed_fields_takes_a_single_empty_entry(sent: Any,
                                                            want: list[tuple[str, str]]) -> None:
    live = apply(None, configmap(a="1", b="2"), "m", force=False, now=T0)
    new = copy.deepcopy(live)
    new["data"]["a"] = "changed"
    if sent is None:
        del new["metadata"]["managedFields"]
    else:
        new["metadata"]["managedFields"] = sent
    out = record_update(live, new, "ctl", now=T1)
    assert managers(out) == want
    assert entry(out, "ctl", "Update")["fieldsV1"] == {"f:data": {"f:a": {}}}


names = st.sampled_from(["a", "b", "c", "d"])
env_lists = st.lists(st.fixed_dictionaries({"name": names, "value": names}),
                     max_size=3, unique_by=lambda e: e["name"])
container_lists = st.lists(
    st.fixed_dictionaries({"name": names, "image": names},
                          optional={"env": env_lists, "args": st.lists(names, max_size=2)}),
    min_size=1, max_size=3, unique_by=lambda c: c["name"])


def pod(containers: list[Any], labels: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "d"}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": containers}}


def _without_empty(value: Any) -> Any:
    """What the server stores: empty lists and string maps are omitted (omitempty)."""
    if isinstance(value, dict):
        return {k: _without_empty(v) for k, v in value.items() if v not in ([], {})}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


@settings(max_examples=150, deadline=None)
@given(container_lists, labels, container_lists, labels)
def test_a_sole_manager_converges_to_exactly_its_configuration(
        c1: list[Any], l1: dict[str, str], c2: list[Any], l2: dict[str, str]) -> None:
    live = apply(None, pod(c1, l1), "only", force=False, now=T0)
    out = apply(live, pod(c2, l2), "only", force=False, now=T1)
    # Compared modulo empty lists (the real server drops `env: []` when it encodes the
    # object) and item order: structured-merge-diff keeps live items in their order and
    # appends new ones (typed/merge.go visitListItems).
    def canonical(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: canonical(x) for k, x in v.items()}
        if isinstance(v, list) and all(isinstance(x, dict) and "name" in x for x in v):
            return sorted((canonical(x) for x in v), key=lambda x: x["name"])
        return v
    def spec(o: dict[str, Any]) -> Any:
        return canonical(_without_empty(o["spec"]))
    assert spec(out) == spec(pod(c2, l2))
    assert (out["metadata"].get("labels") or {}) == l2
    assert apply(out, pod(c2, l2), "only", force=False, now=T2) == out


@settings(max_examples=60, deadline=None)
@given(container_lists, container_lists, container_lists)
def test_another_managers_items_survive_any_apply_that_does_not_name_them(
        mine: list[Any], theirs: list[Any], mine_later: list[Any]) -> None:
    def rename(cs: list[Any], prefix: str) -> list[Any]:
        return [{**c, "name": prefix + c["name"]} for c in cs]
    live = apply(None, pod(rename(mine, "m-"), {}), "me", force=False, now=T0)
    live = apply(live, pod(rename(theirs, "t-"), {}), "them", force=False, now=T1)
    out = apply(live, pod(rename(mine_later, "m-"), {}), "me", force=False, now=T2)
    by_name = {c["name"]: c for c in out["spec"]["containers"]}
    for c in rename(theirs, "t-"):
        assert _without_empty(by_name[c["name"]]) == _without_empty(c)
    assert {n for n in by_name if n.startswith("m-")} == {
        "m-" + c["name"] for c in mine_later}


@settings(max_examples=60, deadline=None)
@given(container_lists, container_lists)
def test_a_forced_apply_always_sets_every_applied_value(first: list[Any],
                                                        forced: list[Any]) -> None:
    live = apply(None, pod(first, {}), "other", force=False, now=T0)
    out = apply(live, pod(forced, {}), "me", force=True, now=T1)
    by_name = {c["name"]: c for c in out["spec"]["containers"]}
    for c in forced:
        for key in ("image", "args"):
            if key in c and c[key] != []:
                assert by_name[c["name"]][key] == c[key]
