"""A write to `/status`: what it takes from the request, what it keeps of the stored
object, and which metadata its managedFields entry may own, per kind, as the status
strategies of kube-apiserver 1.35 decide.

Every status strategy's `PrepareForUpdate` puts the stored `spec` back; the generic
update path (`rest.BeforeUpdate`, staging/src/k8s.io/apiserver/pkg/registry/rest/
update.go) then keeps the stored uid, creationTimestamp, deletionTimestamp,
deletionGracePeriodSeconds and generation whatever the kind (`Store.replace` does that
for every write, so a status write never raises the generation). The rest of the
metadata - labels, annotations, finalizers, ownerReferences - is the request's unless
the kind's strategy puts the stored value back, and that differs by kind:

    apps Deployment       labels kept (`deploymentStatusStrategy`, pkg/registry/apps/
                          deployment/strategy.go: `Spec`, `Labels`; GetResetFields
                          `spec`, `metadata.labels`): annotations, finalizers and
                          ownerReferences are the request's (how the deployment
                          controller writes its revision annotation with UpdateStatus)
    core Pod              ownerReferences kept (`podStatusStrategy`: "old kubelets
                          corrupt them"; GetResetFields adds `metadata.ownerReferences`),
                          an empty `status.qosClass` takes the stored one
    resource.k8s.io ResourceClaim
                          all four kept (`metav1.ResetObjectMetaForStatus`; reset
                          fields `metadata`, `spec`)
    batch Job, apps ReplicaSet, core Node/Namespace/Service, policy
    PodDisruptionBudget, networking Ingress
                          none kept: their strategies reset `spec` alone
                          (`jobStatusStrategy`, pkg/registry/batch/job/strategy.go, ...)
    apiextensions CustomResourceDefinition
                          none kept: its `statusStrategy.PrepareForUpdate` calls
                          `ResetObjectMetaForStatus(&newObj.ObjectMeta,
                          &newObj.ObjectMeta)`, a no-op (kubernetes#137681, fixed after
                          1.35); the CRD finalizer drops its cleanup finalizer through
                          UpdateStatus. Its reset fields name `metadata`, so its
                          managedFields own none of it
    custom resources      everything kept: the customresource `statusStrategy`
                          (apiextensions-apiserver pkg/registry/customresource/
                          status_strategy.go) copies the stored object and puts back the
                          request's `status` (none sent: none stored) and managedFields

So a status PUT that leaves a Deployment's or a Job's finalizers out drops them, as on
a real server, while a patch that does not name them keeps them (a patch applies to
the stored object). Not reproduced: a custom resource's status write that changes
metadata still records those fields in its managedFields entry on a real server (its
reset fields name only `spec`), here it does not.
"""

from __future__ import annotations

from typing import Any

from clusters.sim.resources import RESOURCES, Resource

Obj = dict[str, Any]

META = ("labels", "annotations", "finalizers", "ownerReferences")
"""The metadata a status write may carry; the server sets the rest (see above)."""

_KEPT: dict[tuple[str, str], frozenset[str]] = {
    ("apps", "Deployment"): frozenset({"labels"}),
    ("", "Pod"): frozenset({"ownerReferences"}),
    ("resource.k8s.io", "ResourceClaim"): frozenset(META),
}
"""Metadata a kind's status strategy puts back from the stored object."""

_UNOWNED: dict[tuple[str, str], frozenset[str]] = {
    **_KEPT,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): frozenset(META),
}
"""Metadata in a kind's status reset fields (`GetResetFields`): never owned by a
status writer in managedFields."""

_SERVED = frozenset((r.group, r.kind) for r in RESOURCES if "status" in r.subresources)
"""The built-in kinds with a status subresource; any other kind is a custom one."""


def _group_kind(api_version: str, kind: str) -> tuple[str, str]:
    return (api_version.rsplit("/", 1)[0] if "/" in api_version else "", kind)


def taken(api_version: str, kind: str) -> frozenset[str]:
    """The metadata keys a status write of this kind takes from the request."""
    key = _group_kind(api_version, kind)
    if key not in _SERVED:
        return frozenset()
    return frozenset(META) - _KEPT.get(key, frozenset())


def owned(api_version: str, kind: str) -> frozenset[str]:
    """The metadata keys a status writer's managedFields entry records."""
    key = _group_kind(api_version, kind)
    if key not in _SERVED:
        return frozenset()
    return frozenset(META) - _UNOWNED.get(key, frozenset())


def prepare(res: Resource, new: Obj, old: Obj) -> Obj:
    """The object a status write stores: `new` (the request, its server-set metadata
    already the stored object's) after the kind's status strategy. Shares the parts it
    does not change with `new` and `old`; copies the metadata it edits."""
    nmeta, ometa = new["metadata"], old["metadata"]
    if res.custom:
        out = {k: v for k, v in old.items() if k != "status"}
        if "status" in new:
            out["status"] = new["status"]
        meta = out["metadata"] = dict(ometa)
        if "managedFields" in nmeta:
            meta["managedFields"] = nmeta["managedFields"]
        else:
            meta.pop("managedFields", None)
        return out
    status = new.get("status")
    status = status if isinstance(status, dict) else {}
    if res.kind == "Pod" and not status.get("qosClass") and \
            (old.get("status") or {}).get("qosClass"):
        status = {**status, "qosClass": old["status"]["qosClass"]}
    out = {**old, "status": status}
    meta = out["metadata"] = dict(nmeta)
    for key in _KEPT.get((res.group, res.kind), ()):
        if key in ometa:
            meta[key] = ometa[key]
        else:
            meta.pop(key, None)
    return out
