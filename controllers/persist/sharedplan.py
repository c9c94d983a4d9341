"""The last plan's placements, also kept in the fleet's home cluster for every replica.

`last-plan.json` lives in one replica's state directory; a replica started with an empty
one (a new pod whose state dir is an emptyDir, as most Deployments have) would know
nothing of what runs on a cluster that is down at its start. So the replica that may
write (the leader, or the only one) also keeps the placements in a ConfigMap,
`aifleet-last-plan` of the controller's namespace (`clusters.namespace`) in the home
cluster (`clusters.home`: a management cluster, or a member named with
`--leader-cluster`; where the Lease is).
A restart reads it first and falls back to the local file.

The placements are the same JSON as the file's, gzipped in `binaryData` (10,000
workloads: ~60 KB, far under the 1 MiB object limit). Reading or writing it never
blocks placement for long: each is one request with a short deadline, and a failure is
a warning (the local file still holds).
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from clusters.client import KubeClient
from clusters.configmap import get_configmap, get_configmap_metadata, put_configmap
from clusters.errors import ClusterError
from controllers.persist.lastplan import VERSION, assignments_of, from_doc, to_doc
from fleet.ids import WorkloadId
from fleet.placement.types import Assignment, PreviousPlan

log = structlog.get_logger()

NAME = "aifleet-last-plan"
KEY = "placements.json.gz"


def encode(placed: Mapping[WorkloadId, tuple[Assignment, ...]], commit: str | None) -> str:
    doc = {"version": VERSION, **to_doc(placed, commit)}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")


def decode(data: str) -> PreviousPlan:
    """ValueError (or KeyError/TypeError) when `data` is not `encode`'s."""
    doc = json.loads(gzip.decompress(base64.b64decode(data, validate=True)))
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise ValueError(f"not a version {VERSION} placements document")
    return from_doc(doc)


async def read(client: KubeClient, namespace: str) -> PreviousPlan | None:
    """The placements in the home cluster, or None (none there, or unreadable)."""
    try:
        cm = await get_configmap(client, NAME, namespace=namespace)
        if cm is None:
            return None
        return decode((cm.get("binaryData") or {})[KEY])
    except (ClusterError, TimeoutError) as e:
        log.warning("shared_last_plan_unreadable", error=f"{type(e).__name__}: {e}")
    except (KeyError, TypeError, ValueError, OSError, EOFError) as e:
        log.warning("shared_last_plan_unusable", error=f"{type(e).__name__}: {e}")
    return None


async def published_version(client: KubeClient, namespace: str) -> str | None:
    """The resourceVersion of the ConfigMap holding the leader's published placements,
    read as its metadata alone (`clusters.configmap.get_configmap_metadata`: a few
    hundred bytes, not the 183 KB of the placements at 50,000 workloads); None when
    there is none or it cannot be read now. Every write of the ConfigMap changes it, so
    a follower fetches the placements (`read_published`) only when it changed."""
    try:
        meta = await get_configmap_metadata(client, NAME, namespace=namespace)
    except (ClusterError, TimeoutError) as e:
        log.warning("shared_last_plan_unreadable", error=f"{type(e).__name__}: {e}")
        return None
    version = (meta or {}).get("resourceVersion")
    return version if isinstance(version, str) and version else None


async def read_published(client: KubeClient, namespace: str
                         ) -> tuple[str | None, str | None]:
    """The leader's published placements as stored (`encode`'s text), for the shard
    owners that follow its plan (`controllers.runtime.shards`), with the ConfigMap's
    resourceVersion they were read at; (None, None) when there are none or they cannot
    be read now. Decoding is left to `decode_published`, done only when the text
    changed: at 50,000 workloads it is ~2.2 MB of JSON. The followers read it only when
    `published_version` changed."""
    try:
        cm = await get_configmap(client, NAME, namespace=namespace)
        if cm is None:
            return None, None
        version = (cm.get("metadata") or {}).get("resourceVersion")
        data = (cm.get("binaryData") or {}).get(KEY)
        return (version if isinstance(version, str) else None,
                data if isinstance(data, str) else None)
    except (ClusterError, TimeoutError) as e:
        log.warning("shared_last_plan_unreadable", error=f"{type(e).__name__}: {e}")
    return None, None


def decode_published(data: str, reuse: PublishedParts | None = None
                     ) -> tuple[str | None, PreviousPlan] | None:
    """(the commit it was planned at, the placements) of `read_published`'s text,
    decompressed and parsed once; None (warned) when it is not `encode`'s. With
    `reuse`, a workload whose rows are those of the last text decoded with it keeps the
    placements decoded then (`PublishedParts`)."""
    try:
        doc = json.loads(gzip.decompress(base64.b64decode(data, validate=True)))
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise ValueError(f"not a version {VERSION} placements document")
        commit = doc.get("commit")
        placed = from_doc(doc) if reuse is None else reuse.placements(doc)
        return (commit if isinstance(commit, str) else None), placed
    except (KeyError, TypeError, ValueError, OSError, EOFError) as e:
        log.warning("shared_last_plan_unusable", error=f"{type(e).__name__}: {e}")
    return None


class PublishedParts:
    """The leader's last published placements as a follower decoded them, per workload:
    its rows as stored and its assignments. A new publication (every commit, every
    re-plan) differs from the last in the workloads that changed, so a follower builds
    the assignments of those only and keeps the rest -- the same tuples, which makes
    comparing the new placements with the old cheap too. The key is the workload's
    rows themselves (a few short strings and numbers, compared as parsed): cheaper
    than any digest of them, and exact."""

    def __init__(self) -> None:
        self._parts: dict[str, tuple[Any, tuple[Assignment, ...]]] = {}
        self.built = 0
        """Workloads whose assignments were built (not reused), over all decodes."""

    def placements(self, doc: Mapping[str, Any]) -> PreviousPlan:
        """`lastplan.from_doc(doc)`, reusing what the last document decoded here had
        of each workload; ValueError/TypeError/KeyError when it is not one."""
        parts: dict[str, tuple[Any, tuple[Assignment, ...]]] = {}
        out: dict[WorkloadId, tuple[Assignment, ...]] = {}
        last = self._parts
        for wid, rows in doc["workloads"].items():  # ids: JSON keys, str already
            part = last.get(wid)
            if part is None or part[0] != rows:
                part = (rows, assignments_of(rows))
                self.built += 1
            parts[wid] = part
            out[wid] = part[1]
        self._parts = parts  # only now: a document that failed half-way changes nothing
        return out

    def clear(self) -> None:
        self._parts = {}


async def write(client: KubeClient, namespace: str,
                placed: Mapping[WorkloadId, tuple[Assignment, ...]],
                commit: str | None) -> bool:
    """Replace the ConfigMap (create it, and the namespace, the first time)."""
    try:
        await put_configmap(client, NAME, {"binaryData": {KEY: encode(placed, commit)}},
                            namespace=namespace)
        return True
    except (ClusterError, TimeoutError) as e:
        log.warning("shared_last_plan_not_saved", error=f"{type(e).__name__}: {e}")
        return False


class SharedPlan:
    """The ConfigMap copy as `LastPlan` uses it: `home()` is the home cluster's client
    (None while it is unknown or Unreachable), `namespace` the controller's there; only a
    replica that `may_write()` writes."""

    def __init__(self, home: Callable[[], KubeClient | None],
                 may_write: Callable[[], bool], namespace: str) -> None:
        self.home = home
        self.may_write = may_write
        self.namespace = namespace

    async def read(self) -> PreviousPlan | None:
        client = self.home()
        return await read(client, self.namespace) if client is not None else None

    async def write(self, placed: Mapping[WorkloadId, tuple[Assignment, ...]],
                    commit: str | None) -> bool:
        client = self.home()
        if client is None or not self.may_write():
            return False
        return await write(client, self.namespace, placed, commit)
