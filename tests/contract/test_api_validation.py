"""Contract: what kube-apiserver 1.35 refuses, and how it says so.

Every refusal here is a v1 Status a client can act on: 422 `Invalid` with
`details.causes` (one per field error: reason, message, field, as apimachinery's
`errors.NewInvalid` builds them) for objects that decode but break a rule, and 400
`BadRequest` (or the patch handler's 422) for bodies with a wrong JSON type, which never
decode. Each case names the upstream rule in its id; the assertions are the status,
the reason, the cause's field and type and a substring of its message, so the same
tests pass against a real 1.35 API server (FLEET_E2E_KUBECONFIG).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.contract.k8s import GPU, configmap, deployment, eventually, job, raw

Obj = dict[str, Any]
PATHS = {"Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
         "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
         "Service": "/api/v1/namespaces/{ns}/services",
         "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
         "Pod": "/api/v1/namespaces/{ns}/pods"}
CONTAINER = "spec.template.spec.containers[0]"


def service(name: str = "web", **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec}}


def _main(obj: Obj) -> Obj:
    return dict(obj["spec"]["template"]["spec"]["containers"][0])


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    """A change to a manifest: `spec.replicas` = value; `[0]` indexes a list."""
    def change(obj: Obj) -> None:
        node: Any = obj
        keys = path.replace("[", ".[").split(".")
        for key in keys[:-1]:
            node = node[int(key[1:-1])] if key.startswith("[") else node.setdefault(key, {})
        last = keys[-1]
        if last.startswith("["):
            node[int(last[1:-1])] = value
        else:
            node[last] = value
    return change


async def _create(api: client.ApiClient, ns: str, obj: Obj,
                  query: list[tuple[str, str]] | None = None) -> tuple[int, Any]:
    status, body, _ = await raw(api, "POST", PATHS[obj["kind"]].format(ns=ns), body=obj,
                                query=query)
    return status, body


def _cause(body: Any, field: str) -> dict[str, str]:
    causes = body["details"]["causes"]
    found = [c for c in causes if c["field"] == field]
    assert found, f"no cause on {field}: {causes}"
    return dict(found[0])


LONG = "x" * 64
CASES: list[tuple[str, Obj, Callable[[Obj], None], str, str, str]] = [
    # (id, manifest, change, field, cause reason, message substring)
    ("service-name-is-dns1035", service("1st-triage"), lambda o: None, "metadata.name",
     "FieldValueInvalid", "a DNS-1035 label must consist of lower case alphanumeric"),
    ("deployment-name-is-dns1123-subdomain", deployment("Web"), lambda o: None,
     "metadata.name", "FieldValueInvalid", "a lowercase RFC 1123 subdomain must consist"),
    ("generate-name-is-checked-too", configmap("{ns}", ""),
     _set("metadata.generateName", "Bad_"), "metadata.generateName", "FieldValueInvalid",
     "a lowercase RFC 1123 subdomain"),
    ("label-value-at-most-63", deployment(), _set("metadata.labels", {"team": LONG}),
     "metadata.labels", "FieldValueInvalid", "must be no more than 63 characters"),
    ("label-key-is-a-qualified-name", configmap("{ns}"),
     _set("metadata.labels", {"a/b/c": "x"}), "metadata.labels", "FieldValueInvalid",
     "a valid label key must consist of alphanumeric characters"),
    ("annotation-key-is-a-qualified-name", configmap("{ns}"),
     _set("metadata.annotations", {"-bad": "x"}), "metadata.annotations",
     "FieldValueInvalid", "name part must consist of alphanumeric characters"),
    ("annotations-at-most-256KiB", configmap("{ns}"),
     _set("metadata.annotations", {"big": "x" * (256 * 1024)}), "metadata.annotations",
     "FieldValueTooLong", "Too long: must have at most 262144 bytes"),
    ("replicas-not-negative", deployment(), _set("spec.replicas", -1), "spec.replicas",
     "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0"),
    ("requests-at-most-limits", deployment(),
     _set(f"{CONTAINER}.resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
     f"{CONTAINER}.resources.requests", "FieldValueInvalid",
     "must be less than or equal to cpu limit"),
    ("gpu-request-equals-limit", deployment(),
     _set(f"{CONTAINER}.resources", {"requests": {GPU: "1"}, "limits": {GPU: "2"}}),
     f"{CONTAINER}.resources.requests", "FieldValueInvalid",
     f"must be equal to {GPU} limit"),
    ("gpu-is-a-whole-number", deployment(),
     _set(f"{CONTAINER}.resources", {"limits": {GPU: "0.5"}}),
     f"{CONTAINER}.resources.limits[{GPU}]", "FieldValueInvalid", "must be an integer"),
    ("gpu-request-needs-a-limit", deployment(),
     _set(f"{CONTAINER}.resources", {"requests": {GPU: "1"}}),
     f"{CONTAINER}.resources.limits", "FieldValueRequired",
     "Limit must be set for non overcommitable resources"),
    ("container-port-in-range", deployment(),
     _set(f"{CONTAINER}.ports", [{"containerPort": 70000}]),
     f"{CONTAINER}.ports[0].containerPort", "FieldValueInvalid",
     "Invalid value: 70000: must be between 1 and 65535, inclusive"),
    ("deployment-pods-restart-always", deployment(),
     _set("spec.template.spec.restartPolicy", "Never"),
     "spec.template.spec.restartPolicy", "FieldValueNotSupported",
     'Unsupported value: "Never": supported values: "Always"'),
    ("job-pods-restart-onfailure-or-never", job(),
     _set("spec.template.spec.restartPolicy", "Always"),
     "spec.template.spec.restartPolicy", "FieldValueNotSupported",
     'Unsupported value: "Always": supported values: "OnFailure", "Never"'),
    ("job-without-restart-policy-gets-always", job(),
     lambda o: o["spec"]["template"]["spec"].pop("restartPolicy"),
     "spec.template.spec.restartPolicy", "FieldValueNotSupported",
     'Unsupported value: "Always": supported values: "OnFailure", "Never"'),
    ("container-name-is-dns1123-label", deployment(),
     _set(f"{CONTAINER}.name", "Main"), f"{CONTAINER}.name", "FieldValueInvalid",
     "a lowercase RFC 1123 label must consist of"),
    ("container-names-unique", deployment(),
     lambda o: o["spec"]["template"]["spec"]["containers"].append(_main(o)),
     "spec.template.spec.containers[1].name",
     "FieldValueDuplicate", 'Duplicate value: "main"'),
    ("env-name-without-equals", deployment(),
     _set(f"{CONTAINER}.env", [{"name": "A=B", "value": "1"}]), f"{CONTAINER}.env[0].name",
     "FieldValueInvalid", "printable ASCII characters other than '='"),
    ("selector-matches-template", deployment(),
     _set("spec.template.metadata.labels", {"app": "other"}),
     "spec.template.metadata.labels", "FieldValueInvalid",
     "`selector` does not match template `labels`"),
    ("service-port-in-range", service(), _set("spec.ports", [{"port": 70000}]),
     "spec.ports[0].port", "FieldValueInvalid", "must be between 1 and 65535, inclusive"),
    ("service-target-port-name", service(),
     _set("spec.ports", [{"port": 80, "targetPort": "much-too-long-port-name"}]),
     "spec.ports[0].targetPort", "FieldValueInvalid", "must be no more than 15 characters"),
    ("service-ports-named-when-several", service(),
     _set("spec.ports", [{"port": 80}, {"port": 81, "name": "b"}]), "spec.ports[0].name",
     "FieldValueRequired", "Required value"),
    ("job-parallelism-not-negative", job(), _set("spec.parallelism", -1),
     "spec.parallelism", "FieldValueInvalid", "must be greater than or equal to 0"),
    ("job-backoff-limit-not-negative", job(), _set("spec.backoffLimit", -2),
     "spec.backoffLimit", "FieldValueInvalid", "Invalid value: -2: must be greater"),
    ("configmap-key", configmap("{ns}"), _set("data", {"a b": "x"}), "data[a b]",
     "FieldValueInvalid", "a valid config key must consist of alphanumeric characters"),
]


def _manifest(base: Obj, change: Callable[[Obj], None], ns: str) -> Obj:
    obj = copy.deepcopy(base)
    obj["metadata"] = {k: (v.format(ns=ns) if isinstance(v, str) else v)
                       for k, v in obj["metadata"].items() if v}
    change(obj)
    return obj


@pytest.mark.parametrize(("base", "change", "field", "reason", "text"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_an_invalid_object_is_422_with_the_upstream_cause(
        api: client.ApiClient, ns: str, base: Obj, change: Callable[[Obj], None],
        field: str, reason: str, text: str) -> None:
    """One 422 Invalid per refused object; the cause names the field, its type and the
    upstream message (`pkg/apis/{core,apps,batch}/validation`, apimachinery's
    `util/validation`)."""
    obj = _manifest(base, change, ns)
    status, body = await _create(api, ns, obj)
    assert status == 422, body
    assert body["kind"] == "Status" and body["reason"] == "Invalid" and body["code"] == 422
    cause = _cause(body, field)
    assert cause["reason"] == reason and text in cause["message"], cause
    assert body["details"]["kind"] == obj["kind"]
    assert body["details"].get("group", "") == obj["apiVersion"].rpartition("/")[0]


async def test_a_namespace_name_is_a_dns_label(api: client.ApiClient) -> None:
    """Namespaces are DNS-1123 labels (`ValidateNamespaceName`): a dotted name, valid
    as a subdomain, is refused with `must not contain dots`."""
    status, body, _ = await raw(api, "POST", "/api/v1/namespaces",
                                body={"metadata": {"name": "team.a"}})
    assert status == 422 and body["message"] == (
        'Namespace "team.a" is invalid: metadata.name: Invalid value: "team.a": '
        "must not contain dots")


async def test_a_long_generate_name_is_cut_to_fit(api: client.ApiClient, ns: str) -> None:
    """`SimpleNameGenerator` keeps 58 characters of the prefix and adds 5: the name
    is valid however long the prefix."""
    cm = configmap(ns, "")
    del cm["metadata"]["name"]
    cm["metadata"]["generateName"] = "p" * 70
    status, body = await _create(api, ns, cm)
    assert status == 201, body
    name = body["metadata"]["name"]
    assert len(name) == 63 and name.startswith("p" * 58)


async def test_the_message_is_kind_name_and_the_one_cause(api: client.ApiClient,
                                                          ns: str) -> None:
    """`errors.NewInvalid`: `<Kind>.<group> "<name>" is invalid: <field>: <body>`, one
    cause without brackets; details carry name, group, kind and the cause."""
    status, body = await _create(api, ns, _manifest(deployment(), _set("spec.replicas", -1),
                                                    ns))
    assert status == 422
    assert body["message"] == ('Deployment.apps "web" is invalid: spec.replicas: Invalid '
                               "value: -1: must be greater than or equal to 0")
    assert body["details"] == {
        "name": "web", "group": "apps", "kind": "Deployment",
        "causes": [{"reason": "FieldValueInvalid", "field": "spec.replicas",
                    "message": "Invalid value: -1: must be greater than or equal to 0"}]}


async def test_several_errors_come_in_one_answer_in_brackets(api: client.ApiClient,
                                                             ns: str) -> None:
    """All field errors at once: the message lists them as `[a, b]`, one cause each."""
    obj = deployment()
    obj["spec"]["replicas"] = -1
    obj["metadata"]["labels"] = {"team": LONG}
    status, body = await _create(api, ns, obj)
    assert status == 422
    fields = {c["field"] for c in body["details"]["causes"]}
    assert {"spec.replicas", "metadata.labels"} <= fields
    assert body["message"].startswith('Deployment.apps "web" is invalid: [')
    assert body["message"].endswith("]")


async def test_dry_run_refuses_what_a_write_would(api: client.ApiClient, ns: str) -> None:
    """dryRun=All runs validation: an invalid object is 422 without being stored."""
    status, body = await _create(api, ns, service("1st-triage"), [("dryRun", "All")])
    assert status == 422 and body["reason"] == "Invalid"
    assert _cause(body, "metadata.name")["reason"] == "FieldValueInvalid"


async def test_a_valid_gpu_workload_is_accepted(api: client.ApiClient, ns: str) -> None:
    """The objects aifleet renders stay valid: GPU limit only (request defaulted from
    it), CPU/memory requests, a named port, env, a nodeSelector and tolerations."""
    obj = deployment(gpus=2)
    main = obj["spec"]["template"]["spec"]["containers"][0]
    main["resources"]["requests"] = {"cpu": "4", "memory": "16Gi", GPU: "2"}
    main["ports"] = [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    main["env"] = [{"name": "MODEL", "value": "llama"}]
    obj["spec"]["template"]["spec"]["nodeSelector"] = {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    obj["spec"]["template"]["spec"]["tolerations"] = [
        {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]
    status, body = await _create(api, ns, obj, [("dryRun", "All")])
    assert status == 201, body


async def test_a_jobs_own_selector_needs_manual_selector(api: client.ApiClient,
                                                         ns: str) -> None:
    """The Job strategy generates the selector (`generateSelector`); a selector of the
    user's own is refused (`selector` not auto-generated) unless manualSelector."""
    own = job("own")
    own["spec"]["selector"] = {"matchLabels": {"app": "own"}}
    own["spec"]["template"]["metadata"] = {"labels": {"app": "own"}}
    status, body = await _create(api, ns, own)
    assert status == 422
    assert _cause(body, "spec.selector")["message"].endswith(
        "`selector` not auto-generated")
    own["spec"]["manualSelector"] = True
    status, body = await _create(api, ns, own)
    assert status == 201, body
    assert body["spec"]["selector"] == {"matchLabels": {"app": "own"}}


async def test_a_replaced_service_keeps_its_cluster_ip(api: client.ApiClient,
                                                       ns: str) -> None:
    """A PUT that leaves clusterIP out keeps the allocated one (service REST
    `patchAllocatedValues`) rather than asking for a new one."""
    status, svc = await _create(api, ns, service())
    assert status == 201
    body = service()
    body["metadata"]["resourceVersion"] = svc["metadata"]["resourceVersion"]
    body["spec"]["ports"] = [{"port": 8080}]
    status, out, _ = await raw(api, "PUT", PATHS["Service"].format(ns=ns) + "/web", body=body)
    assert status == 200, out
    assert out["spec"]["clusterIP"] == svc["spec"]["clusterIP"]
    assert out["spec"]["ports"][0]["port"] == 8080


# ------------------------------------------------------------------ wrong JSON types


async def test_a_wrong_json_type_is_the_decoders_400(api: client.ApiClient, ns: str) -> None:
    """`replicas: "two"` never decodes: 400 BadRequest in Go's json wording
    (`handlers/create.go` transformDecodeError)."""
    obj = deployment()
    obj["spec"]["replicas"] = "two"
    status, body = await _create(api, ns, obj)
    assert status == 400 and body["reason"] == "BadRequest"
    assert body["message"] == (
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot '
        "unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32")


async def test_a_wrong_type_in_a_nested_list_names_the_innermost_struct(
        api: client.ApiClient, ns: str) -> None:
    """Go's UnmarshalTypeError: the innermost struct and the path without indices."""
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": "http"}]
    status, body = await _create(api, ns, obj)
    assert status == 400
    assert ("json: cannot unmarshal string into Go struct field ContainerPort.spec.template"
            ".spec.containers.ports.containerPort of type int32") in body["message"]


async def test_a_merge_patch_with_a_wrong_type_is_422_on_patch(api: client.ApiClient,
                                                                ns: str) -> None:
    """JSON and merge patches decode the patched object: a type error is 422 Invalid
    with one cause on `patch` (`handlers/patch.go` jsonPatcher)."""
    assert (await _create(api, ns, deployment()))[0] == 201
    path = PATHS["Deployment"].format(ns=ns) + "/web"
    status, body, _ = await raw(api, "PATCH", path, body={"spec": {"replicas": "two"}},
                                content_type="application/merge-patch+json")
    assert status == 422 and body["reason"] == "Invalid"
    cause = _cause(body, "patch")
    assert cause["reason"] == "FieldValueInvalid"
    assert "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas" \
        " of type int32" in cause["message"]


async def test_an_apply_with_a_wrong_type_is_a_400(api: client.ApiClient, ns: str) -> None:
    """Server-side apply converts the patch to a typed object first: 400 BadRequest
    `failed to create typed patch object` naming the field."""
    obj = deployment()
    obj["metadata"]["namespace"] = ns
    obj["spec"]["replicas"] = "two"
    status, body, _ = await raw(api, "PATCH", PATHS["Deployment"].format(ns=ns) + "/web",
                                body=obj, content_type="application/apply-patch+yaml",
                                query=[("fieldManager", "contract")])
    assert status == 400 and body["reason"] == "BadRequest"
    assert "failed to create typed patch object (apps/v1, Kind=Deployment)" in body["message"]
    assert ".spec.replicas" in body["message"]


async def test_refused_bodies_leave_the_controllers_working(api: client.ApiClient,
                                                            ns: str) -> None:
    """After every kind of bad write, a valid Deployment still gets its pods: nothing
    invalid was stored for a controller to trip on."""
    bad = deployment("bad")
    bad["spec"]["replicas"] = "two"
    await _create(api, ns, bad)
    path = PATHS["Deployment"].format(ns=ns)
    assert (await _create(api, ns, deployment("good", replicas=1)))[0] == 201
    await raw(api, "PATCH", path + "/good", body={"spec": {"replicas": "three"}},
              content_type="application/merge-patch+json")
    await raw(api, "PATCH", path + "/good", body={"spec": {"replicas": -3}},
              content_type="application/merge-patch+json")
    apps = client.AppsV1Api(api)

    async def ready() -> bool:
        d = await apps.read_namespaced_deployment("good", ns)
        return d.spec.replicas == 1 and (d.status.ready_replicas or 0) == 1
    await eventually(ready, within=60)


async def test_scaling_below_zero_is_422_on_the_scale(api: client.ApiClient,
                                                       ns: str) -> None:
    """`/scale` validates the autoscaling/v1 Scale (`ValidateScale`): a negative count
    is 422 Invalid for `Scale.autoscaling`, and the Deployment keeps its replicas."""
    assert (await _create(api, ns, deployment(replicas=2)))[0] == 201
    path = PATHS["Deployment"].format(ns=ns) + "/web/scale"
    status, body, _ = await raw(api, "PATCH", path, body={"spec": {"replicas": -1}},
                                content_type="application/merge-patch+json")
    assert status == 422 and body["reason"] == "Invalid"
    assert body["details"]["kind"] == "Scale" and body["details"]["group"] == "autoscaling"
    assert _cause(body, "spec.replicas")["message"] == \
        "Invalid value: -1: must be greater than or equal to 0"
    stored = await client.AppsV1Api(api).read_namespaced_deployment("web", ns)
    assert stored.spec.replicas == 2


# ------------------------------------------------------------------ immutable fields


async def _patch(api: client.ApiClient, ns: str, kind: str, name: str,
                 change: Obj) -> tuple[int, Any]:
    status, body, _ = await raw(api, "PATCH", PATHS[kind].format(ns=ns) + "/" + name,
                                body=change, content_type="application/merge-patch+json")
    return status, body


async def test_a_nonindexed_jobs_completions_change_names_the_new_value(
        api: client.ApiClient, ns: str) -> None:
    """`ValidateImmutableField` prints the new value: `Invalid value: 3: field is
    immutable`."""
    assert (await _create(api, ns, job("plain", completions=2, parallelism=2)))[0] == 201
    status, body = await _patch(api, ns, "Job", "plain", {"spec": {"completions": 3}})
    assert status == 422
    assert _cause(body, "spec.completions")["message"] == \
        "Invalid value: 3: field is immutable"
    assert body["message"] == ('Job.batch "plain" is invalid: spec.completions: Invalid '
                               "value: 3: field is immutable")


async def test_a_deployments_selector_is_immutable(api: client.ApiClient, ns: str) -> None:
    """apps/v1 Deployments keep their selector (`deployment/strategy.go`)."""
    assert (await _create(api, ns, deployment()))[0] == 201
    status, body = await _patch(api, ns, "Deployment", "web", {"spec": {
        "selector": {"matchLabels": {"app": "web", "tier": "x"}},
        "template": {"metadata": {"labels": {"app": "web", "tier": "x"}}}}})
    assert status == 422
    cause = _cause(body, "spec.selector")
    assert cause["reason"] == "FieldValueInvalid"
    assert cause["message"].endswith("field is immutable")


async def test_a_services_cluster_ip_may_not_change(api: client.ApiClient, ns: str) -> None:
    """`validateServiceClusterIPsRelatedFields`: the primary cluster IP `may not change
    once set`, reported on `spec.clusterIPs[0]`."""
    status, svc = await _create(api, ns, service())
    assert status == 201
    other = "10.96.250.250" if svc["spec"]["clusterIP"] != "10.96.250.250" else "10.96.250.251"
    status, body = await _patch(api, ns, "Service", "web", {
        "spec": {"clusterIP": other, "clusterIPs": [other]}})
    assert status == 422
    cause = _cause(body, "spec.clusterIPs[0]")
    assert "may not change once set" in cause["message"]


async def test_an_update_is_validated_like_a_create(api: client.ApiClient, ns: str) -> None:
    """Replacing an object runs the same rules: a label value over 63 is refused on
    PATCH too, and the stored object is unchanged."""
    assert (await _create(api, ns, deployment()))[0] == 201
    status, body = await _patch(api, ns, "Deployment", "web",
                                {"metadata": {"labels": {"team": LONG}}})
    assert status == 422
    assert _cause(body, "metadata.labels")["reason"] == "FieldValueInvalid"
    stored = await client.AppsV1Api(api).read_namespaced_deployment("web", ns)
    assert "team" not in (stored.metadata.labels or {})
