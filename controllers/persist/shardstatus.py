"""Each shard's reconcile results, published in the home cluster for every replica.

With `--shards`, a replica reconciles only its shards' clusters, so only it knows how
each workload's last apply went there (`PlacementLive`: Synced / Failed, the commit,
why). So that any replica answers `/api/v1/status` for the whole fleet, the owner of
shard i keeps those results in the ConfigMap `aifleet-shard-<i>-status` of the
controller's namespace (gzipped JSON in `binaryData`, like the shared plan), written
when they change, and every replica reads the other shards' and shows them. Health,
pods and capacity need no sharing: every replica watches every cluster.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any

from clusters.client import KubeClient
from clusters.configmap import get_configmap, put_configmap
from controllers.status.statusdoc import PlacementLive
from fleet.ids import ClusterName, WorkloadId
from fleet.shards import lease_name

KEY = "status.json.gz"
VERSION = 1
_FIELDS = {f.name for f in fields(PlacementLive)}


def name_of(shard: int) -> str:
    return f"{lease_name(shard)}-status"


def encode(owner: str, live: Mapping[tuple[ClusterName, WorkloadId], PlacementLive]) -> str:
    rows: dict[str, dict[str, Any]] = {}
    for (cluster, wid), pl in sorted(live.items()):
        rows.setdefault(cluster, {})[wid] = asdict(pl)
    raw = json.dumps({"version": VERSION, "owner": owner, "clusters": rows},
                     separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")


def decode(data: str) -> tuple[str, dict[tuple[ClusterName, WorkloadId], PlacementLive]]:
    """(owner, results); ValueError/KeyError/TypeError when `data` is not `encode`'s."""
    doc = json.loads(gzip.decompress(base64.b64decode(data, validate=True)))
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise ValueError(f"not a version {VERSION} shard status document")
    out: dict[tuple[ClusterName, WorkloadId], PlacementLive] = {}
    for cluster, rows in doc["clusters"].items():
        for wid, row in rows.items():
            out[(ClusterName(cluster), WorkloadId(wid))] = PlacementLive(
                **{k: v for k, v in row.items() if k in _FIELDS})
    return str(doc["owner"]), out


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
