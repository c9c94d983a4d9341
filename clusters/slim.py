"""What the controller keeps of a live object it owns (issue 22, item 1: memory).

At 100 clusters x 5,000 workloads the decoded JSON of the objects we own was most of
the controller's heap (`bench.heapdump`, docs/adapter.md "Where the bytes go"): a
Deployment as the API server returns it is ~21 KiB of Python objects, half of it
`metadata.managedFields`, and each owned object was held twice (the informer's cache
and the applier's inventory). So:

- `slim_live(obj)`: the inventory's copy (`Applier.live`). Everything is kept except,
  in `managedFields`, our own manager's entry and every manager's `status` fields.
  Drift (`fleet.drift.diff`) walks only what we apply and names the owner of a drifted
  field from the *other* managers' entries (ours is skipped there too); we never apply
  `status`, so no drifted path is under it, and dropping it changes no owner. The
  entries themselves stay (with `manager`, `operation`, `time`), so "the most recent
  other writer" is named as before when nobody claims the field. Spec, status,
  labels and annotations are whole: status views, read-back and the content hash read
  them. Map keys and short strings are interned: the JSON decoder makes a new string
  for every key and value of every document (its key memo lives for one document), so
  10,000 Deployments held 10,000 copies of "metadata", "terminationMessagePath",
  "IfNotPresent", ...
- `metadata_only(obj)`: what an owned kind's informer keeps (its cache only has to
  tell a re-list what was there: key, uid, resourceVersion); the handler still gets
  the whole object.
"""

from __future__ import annotations

from sys import intern
from typing import Any, cast

from clusters.client import JSON
from fleet.drift import OUR_MANAGER

_STUB_META = ("name", "namespace", "uid", "resourceVersion", "deletionTimestamp")


def metadata_only(obj: JSON) -> JSON:
    """apiVersion, kind and the metadata an informer's re-list compares (a cache entry
    handed to a handler as a DELETED object carries what `Applier.observe` reads)."""
    meta = obj.get("metadata") or {}
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
            "metadata": {k: meta[k] for k in _STUB_META if k in meta}}


def slim_live(obj: JSON) -> JSON:
    """The object with `managedFields` reduced to what drift reads, keys interned."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return cast(JSON, _interned(obj))
    out = {intern(k): _interned(v) for k, v in obj.items() if k != "metadata"}
    slim_meta: dict[str, Any] = {}
    for k, v in meta.items():
        if k == "managedFields":
            if isinstance(v, list):
                v = [e for e in (_entry(e) for e in v) if e is not None]
            else:
                continue
        slim_meta[intern(k)] = _interned(v)
    out["metadata"] = slim_meta
    return out


def _entry(e: Any) -> dict[str, Any] | None:
    """One managedFields entry as drift reads it; None for ours (never read)."""
    if not isinstance(e, dict) or e.get("manager") == OUR_MANAGER:
        return None
    fields = e.get("fieldsV1")
    if isinstance(fields, dict) and "f:status" in fields:
        fields = {k: v for k, v in fields.items() if k != "f:status"}
    return {k: v for k, v in (("manager", e.get("manager")),
                              ("operation", e.get("operation")),
                              ("time", e.get("time")),
                              ("subresource", e.get("subresource")),
                              ("fieldsV1", fields)) if v is not None}


def _interned(v: Any) -> Any:
    """A copy of decoded JSON with every map key and every short string interned."""
    t = type(v)
    if t is dict:
        return {intern(k): _interned(x) for k, x in v.items()}
    if t is list:
        return [_interned(x) for x in v]
    if t is str and len(v) <= _SHORT:
        return intern(v)
    return v


_SHORT = 64
"""Strings up to this length are interned: kinds, apiVersions, label values, defaults
(`IfNotPresent`, `ClusterFirst`, `25%`), condition reasons, timestamps of one second;
one string for all the objects that hold it. Longer ones are seldom repeated."""
