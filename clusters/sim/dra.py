"""Dynamic Resource Allocation (resource.k8s.io/v1, GA in 1.34) in a simulated cluster.

Every simulated cluster serves DeviceClass, ResourceSlice, ResourceClaim and
ResourceClaimTemplate (a 1.35 server does). A cluster whose spec says `dra` (a Cluster
file labelled `aifleet.dev/gpu-allocation: dra`, see `nodes.spec_from_cluster`) is
one whose GPUs are handed out by the NVIDIA DRA driver instead of the device plugin:
- its nodes carry no `nvidia.com/gpu` capacity; each publishes a ResourceSlice of
  driver `gpu.nvidia.com` (pool = node name), one device per GPU (`gpu-<i>`) with the
  attributes the driver publishes (NVIDIA/k8s-dra-driver-gpu
  cmd/gpu-kubelet-plugin/deviceinfo.go: `type`, `uuid`, `index`, `minor`,
  `productName`, `brand`, capacity `memory`), or, on a MIG flavour (a product named
  `<parent>-MIG-<profile>` as GPU feature discovery names them), one device per MIG
  slice (`type: mig`, `profile`, `parentIndex`, the parent's `productName`);
- the DeviceClasses `gpu.nvidia.com` and `mig.nvidia.com` select them by `type`.

The control-plane parts, as kube-controller-manager's resourceclaim controller and
kube-scheduler's DynamicResources plugin do them (pkg/controller/resourceclaim,
pkg/scheduler/framework/plugins/dynamicresources):
- a pod's `spec.resourceClaims[].resourceClaimTemplateName` gets a generated claim
  (`<pod>-<claim>-<random>`, owned by the pod, annotated
  `resource.kubernetes.io/pod-claim-name`, labels/annotations from the template's
  `spec.metadata`), named in the pod's `status.resourceClaimStatuses`;
- the scheduler binds a pod only to a node whose slices have free devices matching
  each request (the class's and the request's CEL selectors, `cel.py`; `count`, or
  `All`), writes `status.allocation` (results, a nodeSelector on the node,
  allocationTimestamp) and `status.reservedFor` the pod; a pod that fits nowhere is
  Unschedulable with `cannot allocate all claims`;
- a pod that ends or goes is removed from `reservedFor`; a claim reserved for nobody
  is deallocated; a claim generated for a pod that is done is deleted (and one whose
  pod is deleted goes with it, by garbage collection).

Writes are checked as the v1 validation does (pkg/apis/resource/validation): request
names, `exactly` xor `firstAvailable`, `deviceClassName`, `allocationMode`, `count`,
selectors (a CEL form outside `cel.py`'s subset is a 422 that says so), one node
selection per slice, one value per attribute, at most 128 devices per slice, a
claim's spec immutable; and defaulted (`allocationMode: ExactCount`, `count: 1`).
"""

from __future__ import annotations

import asyncio
import copy
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from clusters.sim import objects
from clusters.sim.cel import CelUnsupported, DeviceView, compile_selector, device_view, matches
from clusters.sim.errors import invalid
from clusters.sim.nodes import GPU, MEMORY_LABEL, SimNode, gpu_memory_mib
from clusters.sim.resources import BY_KIND, Resource
from clusters.sim.store import Event, Obj, Store

DRIVER = "gpu.nvidia.com"
GPU_CLASS, MIG_CLASS = "gpu.nvidia.com", "mig.nvidia.com"
POD_CLAIM_NAME = "resource.kubernetes.io/pod-claim-name"
MAX_DEVICES_PER_SLICE = 128  # resource/v1 ResourceSliceMaxDevices
UNSATISFIABLE = "cannot allocate all claims"  # dynamicresources.go ErrReasonUnsatisfiable
CLASSES, SLICES, CLAIMS, TEMPLATES, PODS = (BY_KIND[k] for k in (
    "DeviceClass", "ResourceSlice", "ResourceClaim", "ResourceClaimTemplate", "Pod"))
_MIG = re.compile(r"^(.+)-MIG-(\d+)g\.(\d+)gb$", re.IGNORECASE)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
Cause = tuple[str, str, str]


# ------------------------------------------------------------ what a DRA node publishes


def mig_profile(product: str) -> tuple[str, str, int, int] | None:
    """(parent product, profile, compute slices, memory GB) of a MIG product name
    (`NVIDIA-A100-SXM4-80GB-MIG-3g.40gb`), or None for a whole GPU."""
    m = _MIG.match(product)
    if m is None:
        return None
    return m.group(1), f"{m.group(2)}g.{m.group(3)}gb", int(m.group(2)), int(m.group(3))


def device_classes() -> list[Obj]:
    """The DeviceClasses the NVIDIA DRA driver's chart installs."""
    def cls(name: str, kind: str) -> Obj:
        expr = f"device.driver == '{DRIVER}' && device.attributes['{DRIVER}'].type == '{kind}'"
        return {"metadata": {"name": name},
                "spec": {"selectors": [{"cel": {"expression": expr}}]}}
    return [cls(GPU_CLASS, "gpu"), cls(MIG_CLASS, "mig")]


def _devices(node: SimNode) -> list[Obj]:
    product = node.product or ""
    mig = mig_profile(product)

    def ids(i: int) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sim/{node.name}/{i}"))
    if mig is not None:
        parent, profile, compute, memory_gb = mig
        per_gpu = max(1, 7 // compute)
        return [{"name": f"gpu-{j // per_gpu}-mig-{j % per_gpu}", "attributes": {
            "type": {"string": "mig"}, "uuid": {"string": f"MIG-{ids(j)}"},
            "index": {"int": j % per_gpu}, "parentIndex": {"int": j // per_gpu},
            "profile": {"string": profile}, "productName": {"string": parent},
            "brand": {"string": "Nvidia"}},
            "capacity": {"memory": {"value": f"{memory_gb}Gi"}}}
            for j in range(node.gpus)]
    mib = node.labels.get(MEMORY_LABEL) or gpu_memory_mib(product)
    out = []
    for i in range(node.gpus):
        device: Obj = {"name": f"gpu-{i}", "attributes": {
            "type": {"string": "gpu"}, "uuid": {"string": f"GPU-{ids(i)}"},
            "index": {"int": i}, "minor": {"int": i},
            "productName": {"string": product}, "brand": {"string": "Nvidia"}}}
        if mib:
            device["capacity"] = {"memory": {"value": f"{mib}Mi"}}
        out.append(device)
    return out


def node_slices(node: SimNode) -> list[Obj]:
    """The ResourceSlices the driver's kubelet plugin publishes for one node."""
    devices = _devices(node)
    chunks = [devices[i:i + MAX_DEVICES_PER_SLICE]
              for i in range(0, len(devices), MAX_DEVICES_PER_SLICE)]
    return [{"metadata": {"name": f"{node.name}-{DRIVER}-{n}"}, "spec": {
        "driver": DRIVER, "nodeName": node.name,
        "pool": {"name": node.name, "generation": 1, "resourceSliceCount": len(chunks)},
        "devices": chunk}} for n, chunk in enumerate(chunks)]


def strip_device_plugin(node: Obj) -> None:
    """A DRA node has no `nvidia.com/gpu` extended resource (in place)."""
    for key in ("capacity", "allocatable"):
        node["status"][key].pop(GPU, None)


# ------------------------------------------------------------ validation and defaults


def _selector_causes(selectors: Any, path: str) -> Iterator[Cause]:
    for j, sel in enumerate(selectors or []):
        cel = (sel or {}).get("cel")
        if cel is None:
            yield (f"{path}[{j}].cel", "FieldValueRequired", "Required value")
            continue
        expr, where = cel.get("expression"), f"{path}[{j}].cel.expression"
        if not expr:
            yield (where, "FieldValueRequired", "Required value: expression is required")
            continue
        try:
            compile_selector(str(expr))
        except CelUnsupported as e:
            yield (where, "FieldValueInvalid",
                   f'Invalid value: "{expr}": not supported by the aifleet simulator\'s '
                   f"CEL subset (docs/simulator.md): {e}")


def _exact_causes(exact: Obj, path: str) -> Iterator[Cause]:
    exact.setdefault("allocationMode", "ExactCount")  # v1 SetDefaults_ExactDeviceRequest
    if exact["allocationMode"] == "ExactCount":
        exact.setdefault("count", 1)
    if not exact.get("deviceClassName"):
        yield (f"{path}.deviceClassName", "FieldValueRequired", "Required value")
    mode = exact["allocationMode"]
    if mode not in ("All", "ExactCount"):
        yield (f"{path}.allocationMode", "FieldValueNotSupported",
               f'Unsupported value: "{mode}": supported values: "All", "ExactCount"')
    count = exact.get("count")
    # validateDeviceAllocationMode (pkg/apis/resource/validation/validation.go)
    if mode == "ExactCount" and (not isinstance(count, int) or count <= 0):
        yield (f"{path}.count", "FieldValueInvalid",
               f"Invalid value: {count}: must be greater than zero")
    if mode == "All" and count:
        yield (f"{path}.count", "FieldValueInvalid", f"Invalid value: {count}: must not be "
               "specified when allocationMode is 'All'")
    yield from _selector_causes(exact.get("selectors"), f"{path}.selectors")


def claim_spec_causes(spec: Obj, path: str) -> Iterator[Cause]:
    requests = (spec.get("devices") or {}).get("requests") or []
    for i, req in enumerate(requests):
        where = f"{path}.devices.requests[{i}]"
        name = req.get("name") or ""
        if not name:
            yield (f"{where}.name", "FieldValueRequired", "Required value")
        elif not _DNS_LABEL.match(name) or len(name) > 63:
            yield (f"{where}.name", "FieldValueInvalid", f'Invalid value: "{name}": a '
                   "lowercase RFC 1123 label must consist of lower case alphanumeric "
                   "characters or '-', and must start and end with an alphanumeric "
                   "character")
        exact, first = req.get("exactly"), req.get("firstAvailable")
        if (exact is None) == (first is None):
            yield (where, "FieldValueRequired" if exact is None else "FieldValueInvalid",
                   "Required value: exactly one of `exactly` or `firstAvailable` is "
                   "required" if exact is None else "Invalid value: null: exactly one of "
                   "`exactly` or `firstAvailable` is required, but multiple fields are set")
        elif exact is not None:
            yield from _exact_causes(exact, f"{where}.exactly")
        else:
            for k, sub in enumerate(first or []):
                yield from _exact_causes(sub, f"{where}.firstAvailable[{k}]")


def slice_causes(spec: Obj) -> Iterator[Cause]:
    if not spec.get("driver"):
        yield ("spec.driver", "FieldValueRequired", "Required value")
    pool = spec.get("pool") or {}
    if not pool.get("name"):
        yield ("spec.pool.name", "FieldValueRequired", "Required value")
    if not isinstance(pool.get("resourceSliceCount"), int) or pool["resourceSliceCount"] < 1:
        yield ("spec.pool.resourceSliceCount", "FieldValueInvalid",
               f"Invalid value: {pool.get('resourceSliceCount')}: must be greater than zero")
    chosen = [k for k in ("nodeName", "nodeSelector", "allNodes", "perDeviceNodeSelection")
              if spec.get(k)]
    if len(chosen) != 1:
        yield ("spec", "FieldValueRequired" if not chosen else "FieldValueInvalid",
               "Required value: exactly one of `nodeName`, `nodeSelector`, `allNodes`, "
               "`perDeviceNodeSelection` is required")
    devices = spec.get("devices") or []
    if len(devices) > MAX_DEVICES_PER_SLICE:
        yield ("spec.devices", "FieldValueTooMany", f"Too many: {len(devices)}: must have "
               f"at most {MAX_DEVICES_PER_SLICE} items")
    for i, d in enumerate(devices):
        if not _DNS_LABEL.match(str(d.get("name") or "")):
            yield (f"spec.devices[{i}].name", "FieldValueInvalid" if d.get("name") else
                   "FieldValueRequired", f'Invalid value: "{d.get("name")}": a lowercase '
                   "RFC 1123 label" if d.get("name") else "Required value")
        for key, value in (d.get("attributes") or {}).items():
            kinds = [k for k in ("bool", "int", "string", "version")
                     if isinstance(value, dict) and k in value]
            if len(kinds) != 1:
                yield (f"spec.devices[{i}].attributes[{key}]", "FieldValueInvalid",
                       "Invalid value: exactly one value must be specified")


def admit(res: Resource, obj: Obj, old: Obj | None) -> None:
    """The store's admission step for the resource.k8s.io kinds (module docstring)."""
    kind, spec = res.kind, obj.get("spec") or {}
    causes: list[Cause] = []
    if kind == "ResourceClaim":
        causes = list(claim_spec_causes(spec, "spec"))
        if old is not None and old.get("spec") != obj.get("spec"):
            causes.append(("spec", "FieldValueInvalid", "Invalid value: field is immutable"))
    elif kind == "ResourceClaimTemplate":
        causes = list(claim_spec_causes(spec.get("spec") or {}, "spec.spec"))
    elif kind == "DeviceClass":
        causes = list(_selector_causes(spec.get("selectors"), "spec.selectors"))
    elif kind == "ResourceSlice":
        causes = list(slice_causes(spec))
    if causes:
        raise invalid(f"{res.kind}.{res.group}", obj["metadata"].get("name", ""), causes)


# ------------------------------------------------------------ allocation (pure)


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def claim_names(pod: Obj) -> list[tuple[str, str | None]]:
    """(pod claim name, ResourceClaim name or None while not generated yet)."""
    generated = {s.get("name"): s.get("resourceClaimName")
                 for s in (pod.get("status") or {}).get("resourceClaimStatuses") or []}
    out = []
    for pc in (pod.get("spec") or {}).get("resourceClaims") or []:
        out.append((pc.get("name", ""), pc.get("resourceClaimName")
                    or generated.get(pc.get("name"))))
    return out


def allocation_node(claim: Obj) -> str | None:
    alloc = (claim.get("status") or {}).get("allocation") or {}
    for term in (alloc.get("nodeSelector") or {}).get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("values"):
                return str(f["values"][0])
    return None


Device = tuple[str, str, str, DeviceView]  # driver, pool, name, what CEL sees


class Allocator:
    """One scheduling pass's view: devices per node, taken devices, classes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.classes = {c["metadata"]["name"]: c for c in store.list(CLASSES)}
        self.by_node: dict[str, list[Device]] = {}
        for s in store.list(SLICES):
            spec = s.get("spec") or {}
            node = spec.get("nodeName")
            if not node:
                continue
            pool = (spec.get("pool") or {}).get("name", "")
            for d in spec.get("devices") or []:
                self.by_node.setdefault(node, []).append(
                    (spec.get("driver", ""), pool, d.get("name", ""),
                     device_view(spec.get("driver", ""), d)))
        self.taken: set[tuple[str, str, str]] = set()
        for c in store.list(CLAIMS):
            for r in (((c.get("status") or {}).get("allocation") or {}).get("devices")
                      or {}).get("results") or []:
                self.taken.add((r.get("driver", ""), r.get("pool", ""), r.get("device", "")))

    def plan(self, claims: list[Obj], node: str) -> list[list[Obj]] | None:
        """Allocation results for each claim on `node` (empty for claims already
        allocated there), or None when they cannot all be satisfied there."""
        used: set[tuple[str, str, str]] = set()
        out: list[list[Obj]] = []
        for claim in claims:
            if (claim.get("status") or {}).get("allocation"):
                if allocation_node(claim) not in (None, node):
                    return None
                out.append([])
                continue
            results = self._claim(claim, node, used)
            if results is None:
                return None
            out.append(results)
        return out

    def _claim(self, claim: Obj, node: str, used: set[tuple[str, str, str]]
               ) -> list[Obj] | None:
        results: list[Obj] = []
        for req in ((claim.get("spec") or {}).get("devices") or {}).get("requests") or []:
            options = [(req.get("name", ""), req["exactly"])] if req.get("exactly") else [
                (f"{req.get('name', '')}/{sub.get('name', '')}", sub)
                for sub in req.get("firstAvailable") or []]
            found = next(((name, picked) for name, exact in options
                          if (picked := self._pick(exact, node, used)) is not None), None)
            if found is None:
                return None
            name, picked = found
            for driver, pool, device in picked:
                used.add((driver, pool, device))
                results.append({"request": name, "driver": driver, "pool": pool,
                                "device": device})
        return results

    def _pick(self, exact: Obj, node: str, used: set[tuple[str, str, str]]
              ) -> list[tuple[str, str, str]] | None:
        cls = self.classes.get(exact.get("deviceClassName", ""))
        if cls is None:
            return None
        preds = [compile_selector(s["cel"]["expression"])
                 for s in ((cls.get("spec") or {}).get("selectors") or []) +
                 (exact.get("selectors") or [])]
        fitting = [(d, p, n) for d, p, n, view in self.by_node.get(node, [])
                   if all(matches(pred, view) for pred in preds)]
        free = [k for k in fitting if k not in self.taken and k not in used]
        if exact.get("allocationMode") == "All":
            return free if free and len(free) == len(fitting) else None
        count = int(exact.get("count", 1))
        return free[:count] if len(free) >= count else None


# ------------------------------------------------------------ the controllers


class DynamicResources:
    """One cluster's DRA: admission, slices, the claim controller, the scheduler hook."""

    def __init__(self, store: Store, reschedule: Callable[[], None],
                 suffix: Callable[[], str]) -> None:
        self.store = store
        self.reschedule = reschedule
        self.suffix = suffix
        self._pending: set[tuple[str, str, str]] = set()
        store.admitters.append(admit)
        store.listeners.append(self._on_event)

    def publish(self, nodes: tuple[SimNode, ...]) -> None:
        """Install the driver: its DeviceClasses and one pool of slices per GPU node."""
        for cls in device_classes():
            self.store.create(CLASSES, cls)
        for node in nodes:
            if node.gpus:
                for s in node_slices(node):
                    self.store.create(SLICES, s)

    # ---------------------------------------------------------- scheduler hook

    def wants(self, pod: Obj) -> bool:
        return bool((pod.get("spec") or {}).get("resourceClaims"))

    def _claims(self, pod: Obj) -> list[Obj] | None:
        ns = pod["metadata"]["namespace"]
        out = []
        for _, name in claim_names(pod):
            claim = self.store.find(CLAIMS, ns, name) if name else None
            if claim is None:
                return None
            out.append(claim)
        return out

    def filter(self, pod: Obj, nodes: list[Obj]) -> tuple[list[Obj], int] | None:
        """(nodes where every claim of the pod can be allocated, nodes refused), or None
        while a claim does not exist yet (the pod waits, as PreFilter makes it)."""
        claims = self._claims(pod)
        if claims is None:
            return None
        alloc = Allocator(self.store)
        ok = [n for n in nodes if alloc.plan(claims, n["metadata"]["name"]) is not None]
        return ok, len(nodes) - len(ok)

    def allocate(self, pod: Obj, node: str) -> None:
        """Reserve: write each claim's allocation on `node` and reserve it for the pod."""
        claims = self._claims(pod) or []
        plans = Allocator(self.store).plan(claims, node) or [[] for _ in claims]
        now = objects.now()
        ref = {"resource": "pods", "name": pod["metadata"]["name"],
               "uid": pod["metadata"]["uid"]}
        for claim, results in zip(claims, plans, strict=True):
            status = copy.deepcopy(claim.get("status") or {})
            if results:
                status["allocation"] = {
                    "devices": {"results": results},
                    "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [{
                        "key": "metadata.name", "operator": "In", "values": [node]}]}]},
                    "allocationTimestamp": now}
            reserved = [r for r in status.get("reservedFor") or [] if r.get("uid") != ref["uid"]]
            status["reservedFor"] = [*reserved, ref]
            self.store.replace(CLAIMS, {**claim, "status": status}, claim,
                               subresource="status", check_rv=False)

    # ---------------------------------------------------------- claim controller

    def _on_event(self, ev: Event) -> None:
        if ev.res is not PODS:
            return
        meta = ev.obj["metadata"]
        gone = ev.type == "DELETED" or _terminal(ev.obj)
        if not gone and not self.wants(ev.obj):
            return
        self._pending.add(("release" if gone else "claims", meta.get("namespace", ""),
                           meta["name"] if not gone else meta["uid"]))
        try:
            asyncio.get_running_loop().call_soon(self._drain)
        except RuntimeError:  # a bare store without a loop (unit tests)
            self._drain()

    def _drain(self) -> None:
        pending, self._pending = self._pending, set()
        changed = False
        for what, ns, key in sorted(pending):
            if what == "claims":
                changed |= self._generate(ns, key)
            else:
                changed |= self._release(ns, key)
        if changed:
            self.reschedule()

    def _generate(self, ns: str, name: str) -> bool:
        pod = self.store.find(PODS, ns, name)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return False
        statuses = list((pod.get("status") or {}).get("resourceClaimStatuses") or [])
        have = {s.get("name") for s in statuses}
        made = False
        for pc in pod["spec"].get("resourceClaims") or []:
            tname = pc.get("resourceClaimTemplateName")
            if not tname or pc.get("name") in have:
                continue
            template = self.store.find(TEMPLATES, ns, tname)
            if template is None:
                continue  # the real controller retries with an event; so do pod events
            claim = self._claim_from(pod, pc["name"], template)
            statuses.append({"name": pc["name"],
                             "resourceClaimName": claim["metadata"]["name"]})
            made = True
        if made:
            self.store.replace(PODS, {**pod, "status": {**pod.get("status", {}),
                                                        "resourceClaimStatuses": statuses}},
                               pod, subresource="status", check_rv=False)
        return made

    def _claim_from(self, pod: Obj, claim_name: str, template: Obj) -> Obj:
        tmeta = (template.get("spec") or {}).get("metadata") or {}
        meta = pod["metadata"]
        base = f"{meta['name']}-{claim_name}"[:57]
        annotations = {**(tmeta.get("annotations") or {}), POD_CLAIM_NAME: claim_name}
        obj: Obj = {"metadata": {
            "name": f"{base}-{self.suffix()}", "namespace": meta["namespace"],
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                 "uid": meta["uid"], "controller": True,
                                 "blockOwnerDeletion": True}]},
            "spec": copy.deepcopy((template.get("spec") or {}).get("spec") or {})}
        if tmeta.get("labels"):
            obj["metadata"]["labels"] = dict(tmeta["labels"])
        return self.store.create(CLAIMS, obj)

    def _release(self, ns: str, uid: str) -> bool:
        """The pod `uid` ended or went: unreserve; a claim nobody holds is deallocated."""
        changed = False
        for claim in self.store.list(CLAIMS, ns):
            status = claim.get("status") or {}
            reserved = status.get("reservedFor") or []
            if not any(r.get("uid") == uid for r in reserved):
                continue
            left = [r for r in reserved if r.get("uid") != uid]
            new_status = {k: v for k, v in status.items()
                          if k not in ("reservedFor", "allocation", "devices")} \
                if not left else {**status, "reservedFor": left}
            claim = self.store.replace(CLAIMS, {**claim, "status": new_status}, claim,
                                       subresource="status", check_rv=False)
            changed = True
            owners = claim["metadata"].get("ownerReferences") or []
            if not left and any(o.get("kind") == "Pod" and o.get("uid") == uid
                                for o in owners):
                # Generated for a pod that is done: the controller deletes it rather
                # than wait for the pod's deletion (resourceclaim controller.go).
                self.store.delete(CLAIMS, ns, claim["metadata"]["name"])
        return changed
