"""One simulated cluster's storage: objects, resourceVersion, watch history, events out.

The store plays etcd plus the generic registry of kube-apiserver. Every write goes
through `_commit`, which bumps the cluster's resourceVersion (one integer per cluster,
rendered as an opaque string), replaces the stored dict (stored objects are never
mutated in place, so a handler may serialise one without copying, and a new version
shares the parts it does not change with the one it replaces: writes copy only along
the paths they change, not the whole object), appends the event
to a bounded ring (the watch history window: a watch from a version older than the
ring gets 410 Expired), and fans it out to open watches and to the in-process
controllers (scheduler, kubelet, Job and Deployment controllers) via listeners.

Server rules live here because every path (REST, apply, the controllers, `edit`)
must obey them: uid/creationTimestamp/generation are the server's; generation rises
only when the spec changes; a stale resourceVersion is a 409 Conflict; an update that
changes nothing writes nothing; deletion with finalizers only marks the object;
namespace deletion cascades; dependents are garbage collected or orphaned per
`propagationPolicy` (Jobs default to Orphan, as batch/v1 does).
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from clusters.sim import objects, ssa, status_strategy, storage_kinds, validation
from clusters.sim.errors import SimError, already_exists, bad_request, conflict, not_found
from clusters.sim.resources import BY_KIND, Registry, Resource
from clusters.sim.selectors import Matcher

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace or "", name)
NAMESPACES = BY_KIND["Namespace"]


def pod_grace_period(pod: Obj, requested: int | None) -> int:
    """The grace period a pod's deletion gets (pod strategy `CheckGracefulDelete`,
    `pkg/registry/core/pod/strategy.go`): DeleteOptions' `gracePeriodSeconds`, else
    the pod's `terminationGracePeriodSeconds`; 0 when the pod is not bound to a node
    or already Succeeded/Failed; a negative value becomes 1."""
    period = requested
    if period is None:
        period = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds") or 0)
    if not (pod.get("spec") or {}).get("nodeName"):
        period = 0
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        period = 0
    return 1 if period < 0 else period


@dataclass(slots=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    res: Resource
    obj: Obj
    old: Obj | None = None


@dataclass(eq=False, slots=True)
class Watcher:
    """An open watch: the events for it are pushed by `Store._commit`, no polling."""

    res: Resource
    namespace: str | None
    matcher: Matcher | None
    push: Callable[[str, Obj], None]
    closed: bool = False

    def offer(self, ev: Event) -> None:
        if ev.res is not self.res:
            return
        ns = ev.obj["metadata"].get("namespace", "")
        if self.closed or ev.res != self.res or (
                self.namespace is not None and ns != self.namespace):
            return
        m = self.matcher
        if m is None:
            self.push(ev.type, ev.obj)
            return
        now_in = ev.type != "DELETED" and m(ev.obj)
        was_in = m(ev.old) if ev.old is not None else (ev.type == "DELETED" and m(ev.obj))
        if now_in and was_in:
            self.push("MODIFIED", ev.obj)
        elif now_in:
            self.push("ADDED", ev.obj)
        elif was_in:
            prev = dict(ev.old if ev.old is not None else ev.obj)
            prev["metadata"] = {**prev["metadata"], "resourceVersion": str(ev.rv)}
            self.push("DELETED", prev)


@dataclass
class Store:
    name: str
    history_size: int = 1000
    rv: int = 1
    data: dict[Resource, dict[Key, Obj]] = field(default_factory=dict)
    history: deque[Event] = field(default_factory=deque)
    compacted: int = 0  # newest resourceVersion no longer in the history
    watchers: set[Watcher] = field(default_factory=set)
    listeners: list[Callable[[Event], None]] = field(default_factory=list)
    resources: Registry = field(default_factory=Registry)
    """What this cluster serves: the built-in table plus its CRDs' kinds."""
    admitters: list[Callable[[Resource, Obj, Obj | None], None]] = field(
        default_factory=list)
    """Checks a write must pass after the built-in ones (new object, old or None): a
    CRD's schema (`crds.py`), DRA's shapes (`dra.py`). They raise `SimError` or mutate
    the new object (pruning), as the real server's strategies do."""
    _ips: int = 10

    # ------------------------------------------------------------ reads

    def table(self, res: Resource) -> dict[Key, Obj]:
        res = self.resources.storage_key(res)
        t = self.data.get(res)
        if t is None:
            t = self.data[res] = {}
        return t

    def get(self, res: Resource, ns: str, name: str) -> Obj:
        obj = self.table(res).get((ns, name))
        if obj is None:
            raise not_found(res.plural, name, res.group)
        return obj

    def find(self, res: Resource, ns: str, name: str) -> Obj | None:
        return self.table(res).get((ns, name))

    def list(self, res: Resource, ns: str | None = None,
             matcher: Matcher | None = None) -> list[Obj]:
        t = self.table(res)
        # One namespace's keys sorted, not the whole table's and then filtered: the
        # controllers list a namespace's pods on every sync.
        keys = sorted(t) if ns is None else sorted(k for k in t if k[0] == ns)
        out = []
        for k in keys:
            o = t[k]
            if matcher is None or matcher(o):
                out.append(o)
        return out

    def history_since(self, rv: int) -> Iterator[Event]:
        if rv < self.compacted:
            raise SimError(410, "Expired",
                           f"too old resource version: {rv} ({self.compacted + 1})")
        for ev in self.history:
            if ev.rv > rv:
                yield ev

    def expire(self, keep: int = 0) -> None:
        """Forget all but the last `keep` events: older watches now get 410."""
        while len(self.history) > keep:
            self.compacted = self.history.popleft().rv

    # ------------------------------------------------------------ writes

    def _commit(self, etype: str, res: Resource, key: Key, obj: Obj,
                old: Obj | None) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        t = self.table(res)
        if etype == "DELETED":
            t.pop(key, None)
        else:
            t[key] = obj
        ev = Event(self.rv, etype, self.resources.storage_key(res), obj, old)
        self.history.append(ev)
        if len(self.history) > self.history_size:
            self.compacted = self.history.popleft().rv
        for w in list(self.watchers):
            w.offer(ev)
        for listener in self.listeners:
            listener(ev)
        return obj

    def _check_namespace(self, res: Resource, ns: str) -> None:
        if not res.namespaced:
            return
        nso = self.table(NAMESPACES).get(("", ns))
        if nso is None:
            raise not_found("namespaces", ns)
        if nso["metadata"].get("deletionTimestamp"):
            raise SimError(403, "Forbidden",
                           f'{res.plural}{"." + res.group if res.group else ""} '
                           f'"{ns}" is forbidden: unable to create new content in namespace '
                           f"{ns} because it is being terminated",
                           {"kind": res.plural, "group": res.group})

    def next_ip(self) -> str:
        self._ips += 1
        return f"10.96.{(self._ips >> 8) & 255}.{self._ips & 255}"

    def create(self, res: Resource, obj: Obj, *, manager: str | None = None,
               dry_run: bool = False, fresh: bool = False) -> Obj:
        """`fresh`: `obj` was built for this call and nobody else holds it, so the store
        keeps it instead of a copy (the simulated kubelets' thousands of node Leases)."""
        obj = obj if fresh else copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = str(meta["generateName"])[:validation.MAX_GENERATED_PREFIX] + \
                objects.new_uid()[:5]
        name = meta.get("name") or ""
        ns = meta.get("namespace", "") if res.namespaced else ""
        if res.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        self._check_namespace(res, ns)
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(k, None)
        if "status" in res.subresources and res.kind != "Node":
            obj.pop("status", None)  # the server's, as PrepareForCreate resets it
        meta["uid"] = objects.new_uid()
        meta["creationTimestamp"] = objects.now()
        if res.has_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        objects.decode_quantities(res, obj)
        storage_kinds.on_write(res, obj, None)
        objects.apply_defaults(res, obj, self.next_ip() if res.kind == "Service" else "")
        validation.validate_create(res, obj)
        if (ns, name) in self.table(res):
            raise already_exists(res.plural, name, res.group)
        for admit in self.admitters:
            admit(res, obj, None)
        if manager:
            obj = ssa.record_update(None, obj, manager, now=objects.now())
        if dry_run:
            return obj
        return self._commit("ADDED", res, (ns, name), obj, None)

    def replace(self, res: Resource, new: Obj, old: Obj, *, manager: str | None = None,
                subresource: str | None = None, check_rv: bool = True,
                dry_run: bool = False, managed: bool = False) -> Obj:
        """Store `new` in place of `old` under the server's rules (see module doc).

        `managed` means managedFields are already computed (server-side apply)."""
        meta, ometa = new.setdefault("metadata", {}), old["metadata"]
        name, ns = ometa["name"], ometa.get("namespace", "")
        if meta.get("name", name) != name:
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match "
                              f"the name on the URL ({name})")
        rv = meta.get("resourceVersion")
        if check_rv and rv and rv != ometa.get("resourceVersion"):
            raise conflict(res.plural, name, res.group)
        new["apiVersion"], new["kind"] = res.api_version, res.kind
        if meta.get("uid") and meta["uid"] != ometa.get("uid"):
            # `rest.BeforeUpdate` keeps the stored uid only when none is sent; another
            # is `ValidateObjectMetaAccessorUpdate`'s immutable field (a PUT is refused
            # before, as a precondition: api.py)
            errs = validation.Errs()
            errs.immutable("metadata.uid", meta["uid"])
            validation.raise_if_any(res, name, errs)
        for k in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "generation"):
            if k in ometa:
                meta[k] = ometa[k]
            else:
                meta.pop(k, None)
        objects.decode_quantities(res, new, old)
        if subresource == "status":
            # The kind's status strategy: the stored spec, and per kind the stored or
            # the sent labels, annotations, finalizers, ownerReferences
            # (`status_strategy.py` names each strategy).
            new = status_strategy.prepare(res, new, old)
            meta = new["metadata"]
            validation.validate_status_update(res, old, new)
        elif "status" in old:
            new["status"] = old["status"]
        if subresource != "status":
            storage_kinds.on_write(res, new, old)
            # a replacement without a clusterIP keeps the allocated one
            # (service REST `patchAllocatedValues`)
            objects.apply_defaults(res, new, (old.get("spec") or {}).get("clusterIP", ""))
            if res.kind == "Namespace":
                new["status"] = old.get("status", new.get("status"))
            validation.validate_update(res, old, new)
        for admit in self.admitters:
            admit(res, new, old)
        if manager and not managed:
            new = ssa.record_update(old, new, manager, now=objects.now(),
                                    subresource=subresource)
            meta = new["metadata"]
        if not managed and "managedFields" not in meta and "managedFields" in ometa:
            meta["managedFields"] = ometa["managedFields"]
        if res.has_generation and subresource != "status" and (
                objects.spec_part(new) != objects.spec_part(old) or (
                    _deployment_rules(res) and
                    meta.get("annotations") != ometa.get("annotations"))):
            meta["generation"] = int(ometa.get("generation", 1)) + 1
        meta["resourceVersion"] = ometa.get("resourceVersion")
        if new == old:
            return old
        if dry_run:
            return new
        # generic registry `ShouldDeleteDuringUpdate`: the last finalizer gone and no
        # grace period left (a pod in graceful termination stays for its kubelet).
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and \
                not meta.get("deletionGracePeriodSeconds") and res.kind != "Namespace":
            return self._remove(res, new, "Background")
        return self._commit("MODIFIED", res, (ns, name), new, old)

    def bind(self, res: Resource, pod: Obj, node: str, scheduled: Obj) -> Obj:
        """The `pods/binding` write: nodeName and the PodScheduled=True condition in one
        storage update that bypasses the field manager, as `BindingREST`'s
        `setPodNodeAndMetadata` (`pkg/registry/core/pod/storage/storage.go`) does with
        `GuaranteedUpdate`: a real pod's managedFields name no owner for
        `spec.nodeName`."""
        # New dicts along the paths that change (metadata takes the resourceVersion),
        # the rest shared with the stored pod: one bind per pod, so no deep copy.
        status = dict(pod.get("status", {}))
        status["conditions"] = [c for c in status.get("conditions") or []
                                if c.get("type") != "PodScheduled"] + [scheduled]
        new = {**pod, "metadata": dict(pod["metadata"]),
               "spec": {**pod["spec"], "nodeName": node}, "status": status}
        meta = pod["metadata"]
        return self._commit("MODIFIED", res, (meta.get("namespace", ""), meta["name"]),
                            new, pod)

    def delete(self, res: Resource, ns: str, name: str, *,
               propagation: str | None = None, precondition_rv: str | None = None,
               precondition_uid: str | None = None, dry_run: bool = False,
               grace_seconds: int | None = None) -> Obj:
        old = self.get(res, ns, name)
        _check_preconditions(res, old, precondition_uid, precondition_rv)
        if propagation is None:
            propagation = "Orphan" if res.kind == "Job" else "Background"
        if propagation not in ("Orphan", "Background", "Foreground"):
            raise bad_request(f"unsupported propagationPolicy {propagation!r}")
        if dry_run:
            return old
        if res.kind == "Namespace":
            return self._delete_namespace(old)
        if res.kind == "Pod":
            period = pod_grace_period(old, grace_seconds)
            if period > 0:
                return self._delete_gracefully(res, old, period)
        finalizers = list(old["metadata"].get("finalizers") or [])
        if finalizers:
            if old["metadata"].get("deletionTimestamp"):
                return old
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = objects.now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            return self._commit("MODIFIED", res, (ns, name), new, old)
        return self._remove(res, copy.deepcopy(old), propagation)

    def _delete_gracefully(self, res: Resource, old: Obj, period: int) -> Obj:
        """Mark a pod for graceful deletion, as apiserver `rest.BeforeDelete` does:
        deletionTimestamp = now + period, deletionGracePeriodSeconds = period,
        generation + 1; a second delete may only shorten the period. The pod stays
        (holding its node's resources) until the kubelet removes it."""
        meta = old["metadata"]
        current = meta.get("deletionGracePeriodSeconds")
        if meta.get("deletionTimestamp") and current is not None and period >= current:
            return old
        new = copy.deepcopy(old)
        nmeta = new["metadata"]
        if meta.get("deletionTimestamp") and current is not None:
            start = objects.parse_time(meta["deletionTimestamp"]) - current
        else:
            start = objects.parse_time(objects.now())
            if res.has_generation:
                nmeta["generation"] = int(meta.get("generation", 1)) + 1
        nmeta["deletionTimestamp"] = objects.format_time(start + period)
        nmeta["deletionGracePeriodSeconds"] = period
        key = (meta.get("namespace", ""), meta["name"])
        return self._commit("MODIFIED", res, key, new, old)

    def _remove(self, res: Resource, obj: Obj, propagation: str) -> Obj:
        meta = obj["metadata"]
        ns, name, uid = meta.get("namespace", ""), meta["name"], meta["uid"]
        self._commit("DELETED", res, (ns, name), obj, None)
        self._collect(ns, uid, propagation)
        self._maybe_finish_namespace(ns)
        return obj

    def _collect(self, ns: str, owner_uid: str, propagation: str) -> None:
        """The garbage collector: delete or orphan the dependents of a removed owner."""
        for res, table in list(self.data.items()):
            if not res.namespaced:
                continue
            for (ons, oname), o in list(table.items()):
                refs = o["metadata"].get("ownerReferences") or []
                if ons != ns or not any(r.get("uid") == owner_uid for r in refs):
                    continue
                if propagation == "Orphan":
                    new = copy.deepcopy(o)
                    new["metadata"]["ownerReferences"] = [
                        r for r in refs if r.get("uid") != owner_uid]
                    if not new["metadata"]["ownerReferences"]:
                        del new["metadata"]["ownerReferences"]
                    self._commit("MODIFIED", res, (ons, oname), new, o)
                elif (ons, oname) in table:
                    self.delete(res, ons, oname, propagation="Background")

    def _delete_namespace(self, old: Obj) -> Obj:
        name = old["metadata"]["name"]
        if not old["metadata"].get("deletionTimestamp"):
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = objects.now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["status"] = {"phase": "Terminating"}
            old = self._commit("MODIFIED", NAMESPACES, ("", name), new, old)
        for res, table in list(self.data.items()):
            if res.namespaced:
                for ons, oname in [k for k in table if k[0] == name]:
                    if (ons, oname) in table:
                        self.delete(res, ons, oname, propagation="Background")
        self._maybe_finish_namespace(name)
        return old

    def _maybe_finish_namespace(self, ns: str) -> None:
        if not ns:
            return
        nso = self.table(NAMESPACES).get(("", ns))
        if nso is None or not nso["metadata"].get("deletionTimestamp"):
            return
        for res, table in self.data.items():
            if res.namespaced and any(k[0] == ns for k in table):
                return
        self._commit("DELETED", NAMESPACES, ("", ns), copy.deepcopy(nso), None)


def _check_preconditions(res: Resource, obj: Obj, uid: str | None, rv: str | None) -> None:
    """DeleteOptions `preconditions`: a 409 worded as the generic registry's
    `rest.BeforeDelete` (`staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go`)
    words it, which names the kind (not the resource) it conflicts on."""
    meta = obj["metadata"]
    if uid is not None and uid != meta.get("uid"):
        why = (f"the UID in the precondition ({uid}) does not match the UID in record "
               f"({meta.get('uid')}). The object might have been deleted and then recreated")
    elif rv is not None and rv != meta.get("resourceVersion"):
        why = (f"the ResourceVersion in the precondition ({rv}) does not match the "
               f"ResourceVersion in record ({meta.get('resourceVersion')}). The object "
               "might have been modified")
    else:
        return
    qual = f"{res.kind}.{res.group}" if res.group else res.kind
    details: dict[str, Any] = {"name": meta["name"], "kind": res.kind}
    if res.group:
        details["group"] = res.group
    raise SimError(409, "Conflict", f'Operation cannot be fulfilled on {qual} '
                   f'"{meta["name"]}": {why}', details)


def _deployment_rules(res: Resource) -> bool:
    """A Deployment (apps): kube-apiserver's Deployment strategy raises its generation
    when its annotations change too ("annotations are copied from deployments to their
    replica sets", `PrepareForUpdate` in pkg/registry/apps/deployment/strategy.go); its
    status strategy does not, which is how the deployment controller records the
    revision annotation (`UpdateStatus`) without raising it (`status_strategy.py`)."""
    return res.kind == "Deployment" and res.group == "apps"
