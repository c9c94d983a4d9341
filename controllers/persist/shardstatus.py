"""Each shard's reconcile results, published in the home cluster for every replica.

With `--shards`, a replica reconciles only its shards' clusters, so only it knows how
each workload's last apply went there (`PlacementLive`: Synced / Failed, the commit,
why). So that any replica answers `/api/v1/status` for the whole fleet, the owner of
shard i keeps those results in the ConfigMap `aifleet-shard-<i>-status` of the
controller's namespace (gzipped JSON in `binaryData`, like the shared plan), written
when they change, and every replica reads the other shards' and shows them.

A replica connects only to its own shards' clusters, so the same document also carries
what the others need of them (`views`): per cluster its health, how long it has been
Unreachable, and its nodes (the capacity placement reads), with the wall time `at`
they were observed. The holder re-publishes at least every `REFRESH` of a Lease
duration even when nothing changed, so a reader tells a live shard from a silent one
by the document changing (`controllers.runtime.shards`; the rule is
`fleet.shards.published_health`). Older readers ignore the extra keys.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from clusters.capacity import NodeState
from clusters.client import KubeClient
from clusters.configmap import get_configmap, put_configmap
from controllers.status.statusdoc import PlacementLive
from fleet.ids import ClusterName, WorkloadId
from fleet.shards import lease_name

KEY = "status.json.gz"
VERSION = 1
_FIELDS = {f.name for f in fields(PlacementLive)}
_NODE_FIELDS = {f.name for f in fields(NodeState)}
REFRESH = 1 / 3
"""The holder re-publishes at least every third of its Lease duration."""


@dataclass(frozen=True, slots=True)
class ClusterNews:
    """One cluster as its shard's holder saw it."""

    health: str
    unreachable_for: float | None
    nodes: tuple[NodeState, ...]


@dataclass(frozen=True, slots=True)
class ShardDoc:
    owner: str
    live: dict[tuple[ClusterName, WorkloadId], PlacementLive]
    views: dict[ClusterName, ClusterNews]
    at: str | None
    """When the holder observed `views` (RFC 3339, its clock), None in an old document."""


def name_of(shard: int) -> str:
    return f"{lease_name(shard)}-status"


def content(owner: str, live: Mapping[tuple[ClusterName, WorkloadId], PlacementLive],
            views: Mapping[str, ClusterNews] | None = None) -> dict[str, Any]:
    """The document but its time: what a holder compares to decide that it changed."""
    rows: dict[str, dict[str, Any]] = {}
    for (cluster, wid), pl in sorted(live.items()):
        rows.setdefault(cluster, {})[wid] = asdict(pl)
    doc: dict[str, Any] = {"version": VERSION, "owner": owner, "clusters": rows}
    if views is not None:
        doc["views"] = {name: {"health": v.health, "unreachableFor": v.unreachable_for,
                               "nodes": [asdict(n) for n in v.nodes]}
                        for name, v in sorted(views.items())}
    return doc


def encode(owner: str, live: Mapping[tuple[ClusterName, WorkloadId], PlacementLive],
           views: Mapping[str, ClusterNews] | None = None, at: str | None = None) -> str:
    doc = content(owner, live, views)
    if at is not None:
        doc["at"] = at
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")


def decode_doc(data: str) -> ShardDoc:
    """ValueError/KeyError/TypeError when `data` is not `encode`'s."""
    doc = json.loads(gzip.decompress(base64.b64decode(data, validate=True)))
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise ValueError(f"not a version {VERSION} shard status document")
    out: dict[tuple[ClusterName, WorkloadId], PlacementLive] = {}
    for cluster, rows in doc["clusters"].items():
        for wid, row in rows.items():
            out[(ClusterName(cluster), WorkloadId(wid))] = PlacementLive(
                **{k: v for k, v in row.items() if k in _FIELDS})
    views: dict[ClusterName, ClusterNews] = {}
    for name, v in (doc.get("views") or {}).items():
        gone = v.get("unreachableFor")
        views[ClusterName(name)] = ClusterNews(
            str(v["health"]), float(gone) if gone is not None else None,
            tuple(_node(n) for n in v.get("nodes") or ()))
    at = doc.get("at")
    return ShardDoc(str(doc["owner"]), out, views, at if isinstance(at, str) else None)


def _node(row: dict[str, Any]) -> NodeState:
    fields_ = {k: v for k, v in row.items() if k in _NODE_FIELDS}
    fields_["taints"] = tuple(tuple(t) for t in fields_.get("taints") or ())
    return NodeState(**fields_)


def decode(data: str) -> tuple[str, dict[tuple[ClusterName, WorkloadId], PlacementLive]]:
    """(owner, results); ValueError/KeyError/TypeError when `data` is not `encode`'s."""
    doc = decode_doc(data)
    return doc.owner, doc.live


async def write(client: KubeClient, namespace: str, shard: int, data: str) -> None:
    """ClusterError or TimeoutError when it cannot be written now."""
    await put_configmap(client, name_of(shard), {"binaryData": {KEY: data}},
                        namespace=namespace)


async def read(client: KubeClient, namespace: str, shard: int) -> str | None:
    """The encoded document, None when there is none; ClusterError or TimeoutError when
    it cannot be read now."""
    cm = await get_configmap(client, name_of(shard), namespace=namespace)
    if cm is None:
        return None
    data = (cm.get("binaryData") or {}).get(KEY)
    return data if isinstance(data, str) else None
