"""The last plan's placements, also kept in the fleet's home cluster for every replica.

`last-plan.json` lives in one replica's state directory; a replica started with an empty
one (a new pod whose state dir is an emptyDir, as most Deployments have) would know
nothing of what runs on a cluster that is down at its start. So the replica that may
write (the leader, or the only one) also keeps the placements in ConfigMaps of the
controller's namespace (`clusters.namespace`) in the home cluster (`clusters.home`: a
management cluster, or a member named with `--leader-cluster`; where the Lease is).
A restart reads them first and falls back to the local file; with `--shards`, the
replicas that do not lead follow them (`controllers.runtime.shards`).

The placements are split in parts (`aifleet-last-plan-p<k>`, k = CRC-32 of the
workload id mod the part count, a power of two up to `MAX_PARTS` chosen by size), each
the same JSON as the file's for its workloads, gzipped in `binaryData`; the index,
`aifleet-last-plan`, names the commit planned, the part count and each part's digest.
A plan that changes k workloads re-encodes and writes only their parts, then the index
(`Publisher`): at 50,000 workloads a one-workload commit writes ~6 KB and an index of
~1.3 KB, where the whole document was 183 KB stored and 2.2 MB of JSON to encode. A
follower fetches and decodes only the parts whose digest changed (`Reader`), and a part
that does not match the index it read (written since, or torn) leaves everything as it
was until the next look: never a mixed picture. Parts past the index's count (left by a
larger count before) are ignored, and deleted by the leader that shrank it.

The previous version kept all the placements in `aifleet-last-plan` itself
(`placements.json.gz` in its `binaryData`): every reader still takes that form, and a
leader's first write (holding nothing yet) writes the new form whole. Reading or
writing never blocks placement for long: each request has a short deadline, and a
failure is a warning (the local file still holds; what was not written is written at
the next save).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import zlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from clusters.client import KubeClient
from clusters.configmap import (
    delete_configmap,
    get_configmap,
    get_configmap_metadata,
    put_configmap,
)
from clusters.errors import ClusterError, Conflict, NotFound
from controllers.persist.lastplan import VERSION, assignments_of, from_doc, to_doc
from fleet.ids import WorkloadId
from fleet.placement.types import Assignment, Plan, PreviousPlan
from fleet.planning import placements

log = structlog.get_logger()

NAME = "aifleet-last-plan"
KEY = "placements.json.gz"
PARTS_PREFIX = f"{NAME}-p"
"""The parts: `aifleet-last-plan-p<k>`, k < the index's part count."""
MAX_PARTS = 32
"""The most parts an index names (the chart's Role names each part's ConfigMap)."""
WORKLOADS_PER_PART = 2_000
"""The part count is the power of two that keeps parts near this many workloads
(~90 KB of JSON, ~8 KB stored), up to `MAX_PARTS`: at 50,000 workloads, 32 parts of
~1,560 workloads, ~6 KB stored each."""
PARALLEL_PARTS = 4
"""Parts written at once by `Publisher.flush` (a whole write at 50,000 workloads is 32
of them, each a round trip of its own; the index still waits for every one)."""
INDEX_KEY = "index.json"
INDEX_VERSION = 2


def part_name(k: int) -> str:
    return f"{PARTS_PREFIX}{k}"


def part_names() -> list[str]:
    """Every part's ConfigMap name an index may use (the chart's Role lists them)."""
    return [part_name(k) for k in range(MAX_PARTS)]


def part_of(wid: str, parts: int) -> int:
    """The part of a workload: CRC-32 of its id (fixed across processes and versions,
    unlike Python's salted `hash()`) mod the part count."""
    return zlib.crc32(wid.encode()) % parts


def parts_for(workloads: int, now: int = 0) -> int:
    """The part count for `workloads` placements: `now` (the count in use, 0: none)
    while it is within a factor of two of the ideal, so a fleet that hovers around a
    boundary does not rewrite every part back and forth."""
    ideal = 1
    while ideal < MAX_PARTS and ideal * WORKLOADS_PER_PART < workloads:
        ideal *= 2
    if now and ideal // 2 <= now <= ideal * 2 and now <= MAX_PARTS:
        return now
    return ideal


def digest(text: str) -> str:
    """What the index says of a part: SHA-256 of its stored text (128 bits of it)."""
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:32]


def encode_part(placed: Mapping[WorkloadId, tuple[Assignment, ...]], k: int,
                parts: int) -> str:
    """Part `k` of `parts`: its placements as the whole document has them, gzipped,
    base64 (deterministic: the same placements give the same text, and digest)."""
    doc = {"version": VERSION, "part": k, "parts": parts, **to_doc(placed, None)}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")


def decode_part(text: str, k: int, parts: int) -> dict[str, Any]:
    """Part `k` of `parts`'s workloads -> rows as stored; ValueError (or KeyError,
    TypeError, OSError, EOFError) when it is not `encode_part`'s of that part."""
    doc = json.loads(gzip.decompress(base64.b64decode(text, validate=True)))
    if not isinstance(doc, dict) or doc.get("version") != VERSION or \
            doc.get("part") != k or doc.get("parts") != parts:
        raise ValueError(f"not part {k} of {parts} of a version {VERSION} document")
    workloads = doc["workloads"]
    if not isinstance(workloads, dict):
        raise ValueError("workloads is not an object")
    return workloads


@dataclass(frozen=True, slots=True)
class Index:
    """What the index ConfigMap says: the commit planned, the part count, and each
    part's digest."""

    commit: str | None
    digests: tuple[str, ...]

    @property
    def parts(self) -> int:
        return len(self.digests)

    def encode(self) -> str:
        return json.dumps({"version": INDEX_VERSION, "commit": self.commit,
                           "parts": self.parts, "digests": list(self.digests)},
                          separators=(",", ":"))


def decode_index(text: str) -> Index:
    """ValueError (or KeyError/TypeError) when `text` is not `Index.encode`'s."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("version") != INDEX_VERSION:
        raise ValueError(f"not a version {INDEX_VERSION} index")
    commit, parts, digests = doc["commit"], doc["parts"], doc["digests"]
    if not (commit is None or isinstance(commit, str)) or type(parts) is not int or \
            not 1 <= parts <= MAX_PARTS or not isinstance(digests, list) or \
            len(digests) != parts or not all(isinstance(d, str) for d in digests):
        raise ValueError("an index with bad fields")
    return Index(commit, tuple(digests))


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
    """The placements in the home cluster (either form), or None (none there, or not
    readable whole: a part rewritten under each of three reads, say)."""
    reader = Reader()
    for _ in range(3):
        update = await reader.poll(client, namespace)
        if update is not None:
            return update.placed
        if reader.torn == 0:
            return None
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
    """Write the placements whole, every part then the index (create them, and the
    namespace, the first time)."""
    publisher = Publisher()
    publisher.whole(placed, commit)
    return await publisher.flush(client, namespace, lambda: True)


class SharedPlan:
    """The ConfigMap copy as `LastPlan` uses it: `home()` is the home cluster's client
    (None while it is unknown or Unreachable), `namespace` the controller's there; only a
    replica that `may_write()` writes."""

    def __init__(self, home: Callable[[], KubeClient | None],
                 may_write: Callable[[], bool], namespace: str) -> None:
        self.home = home
        self.may_write = may_write
        self.namespace = namespace
        self.publisher = Publisher()
        self._of: Plan | None = None
        """The plan `publisher` holds the placements of."""

    async def read(self) -> PreviousPlan | None:
        client = self.home()
        return await read(client, self.namespace) if client is not None else None

    async def write(self, placed: Mapping[WorkloadId, tuple[Assignment, ...]],
                    commit: str | None) -> bool:
        client = self.home()
        if client is None or not self.may_write():
            self.forget()
            return False
        self._of = None
        self.publisher.whole(placed, commit)
        return await self.publisher.flush(client, self.namespace, self.may_write)

    async def write_plan(self, plan: Plan, commit: str | None, *,
                         changed: Collection[WorkloadId] | None = None,
                         base: Plan | None = None) -> bool:
        """Write `plan`'s placements: when it is `base` (the plan written last) with only
        `changed` decisions changed, only their parts are looked at, encoded and
        written (O(changed)); else the whole placements are compared part by part.
        Written again for a new commit even when the placements are the same (the
        index): shard owners follow the leader's plan only once it is of their commit.
        A replica that may not write forgets what it held: what is stored may be
        another's, so its first write once it may is whole."""
        client = self.home()
        if client is None or not self.may_write():
            self.forget()
            return False
        if changed is not None and base is not None and base is self._of and \
                self.publisher.held:
            self.publisher.change({wid: _placed(plan, wid) for wid in changed}, commit)
        else:
            self.publisher.whole(placements(plan), commit)
        self._of = plan
        return await self.publisher.flush(client, self.namespace, self.may_write)

    def forget(self) -> None:
        self.publisher.forget()
        self._of = None


def _placed(plan: Plan, wid: WorkloadId) -> tuple[Assignment, ...] | None:
    wp = plan.workloads.get(wid)
    return wp.assignments if wp is not None and wp.status == "Placed" and wp.assignments \
        else None


class Publisher:
    """The leader's side of the parted store: its placements split into parts, each
    part's stored text and digest kept, so a plan that changes k workloads re-encodes
    and writes only the parts they are in, then the index (`flush`). Nothing is held
    at start (or after `forget`): the first write is whole, which is also what turns
    the old single-document form into this one after an upgrade."""

    def __init__(self) -> None:
        self.parts: list[dict[WorkloadId, tuple[Assignment, ...]]] = []
        self.texts: list[str] = []
        self.digests: list[str] = []
        self.commit: str | None = None
        self.dirty: set[int] = set()
        """Parts changed since they were last written (encoded again at `flush`)."""
        self.index_dirty = False
        self.index_version: str | None = None
        """The index's resourceVersion as this publisher last wrote it (None: replaced
        whatever is there)."""
        self.was: int = 0
        """The part count of the index last written here, when another is in use now
        (the parts past the new count are deleted after the next index write)."""
        self.puts = 0
        self.bytes_written = 0
        self.encoded = 0
        """Parts written, their bytes (stored text), and parts encoded: over all
        flushes."""

    @property
    def held(self) -> bool:
        return bool(self.parts)

    def forget(self) -> None:
        self.__init__()  # type: ignore[misc]

    def whole(self, placed: Mapping[WorkloadId, tuple[Assignment, ...]],
              commit: str | None) -> None:
        """Hold `placed`: the parts that differ from those held (all of them when the
        part count changes) are written at the next `flush`."""
        count = parts_for(len(placed), len(self.parts))
        split: list[dict[WorkloadId, tuple[Assignment, ...]]] = [{} for _ in range(count)]
        for wid, assignments in placed.items():
            split[part_of(wid, count)][wid] = assignments
        if count != len(self.parts):
            self.was = max(self.was, len(self.parts))
            self.texts, self.digests = [""] * count, [""] * count
            self.dirty = set(range(count))
        else:
            self.dirty |= {k for k in range(count) if split[k] != self.parts[k]}
        self.parts = split
        self.index_dirty = self.index_dirty or bool(self.dirty) or commit != self.commit
        self.commit = commit

    def change(self, changes: Mapping[WorkloadId, tuple[Assignment, ...] | None],
               commit: str | None) -> None:
        """Apply changed placements (None: no longer placed) to the parts held."""
        assert self.parts, "change() before whole()"
        count = len(self.parts)
        for wid, now in changes.items():
            k = part_of(wid, count)
            part = self.parts[k]
            if part.get(wid) == now:
                continue
            if now is None:
                del part[wid]
            else:
                part[wid] = now
            self.dirty.add(k)
        self.index_dirty = self.index_dirty or bool(self.dirty) or commit != self.commit
        self.commit = commit

    async def flush(self, client: KubeClient, namespace: str,
                    may_write: Callable[[], bool]) -> bool:
        """Write the changed parts (`PARALLEL_PARTS` at a time), then the index (only
        after every part it names is written: a reader never finds an index naming a
        part not yet there). What
        failed stays to write at the next flush. False when not all was written.

        The index is replaced only at the version this publisher last wrote: one
        written by another replica since (a leader that lost its Lease and took it
        back, while another wrote) means the parts there are not the ones held here,
        so every part is written again, then the index."""
        try:
            for attempt in range(2):
                for k in sorted(self.dirty):  # the others' texts and digests are kept
                    self.texts[k] = encode_part(self.parts[k], k, len(self.parts))
                    self.digests[k] = digest(self.texts[k])
                    self.encoded += 1
                if not await self._put_parts(client, namespace, may_write):
                    return False
                if not self.index_dirty:
                    break
                if not may_write():
                    return False
                text = Index(self.commit, tuple(self.digests)).encode()
                try:
                    got = await put_configmap(client, NAME, {"data": {INDEX_KEY: text}},
                                              namespace=namespace,
                                              resource_version=self.index_version)
                except (Conflict, NotFound):
                    if attempt or self.index_version is None:
                        raise
                    log.warning("shared_last_plan_written_elsewhere")
                    self.dirty, self.index_version = set(range(len(self.parts))), None
                    continue
                version = (got.get("metadata") or {}).get("resourceVersion")
                self.index_version = version if isinstance(version, str) else None
                self.index_dirty = False
                self.puts += 1
                self.bytes_written += len(text)
                break
            while self.was > len(self.parts):  # named by no index now: not read again
                self.was -= 1
                await delete_configmap(client, part_name(self.was), namespace=namespace)
            self.was = 0
        except (ClusterError, TimeoutError) as e:
            log.warning("shared_last_plan_not_saved", error=f"{type(e).__name__}: {e}")
            return False
        return not self.dirty and not self.index_dirty

    async def _put_parts(self, client: KubeClient, namespace: str,
                         may_write: Callable[[], bool]) -> bool:
        """Write the dirty parts, `PARALLEL_PARTS` at a time (they name one another
        nowhere: only the index, written after all of them, makes them read). Returns
        only once every write begun has ended: False when `may_write` refused one, the
        first error raised when one failed; none is begun after either. What was
        written is not dirty any more; the rest stays to write at the next flush."""
        limiter = anyio.CapacityLimiter(PARALLEL_PARTS)
        failed: list[ClusterError | TimeoutError] = []
        refused = False

        async def put(k: int) -> None:
            nonlocal refused
            async with limiter:
                if failed or refused:
                    return
                if not may_write():
                    refused = True
                    return
                try:
                    await put_configmap(client, part_name(k), {
                        "data": {"sha256": self.digests[k]},
                        "binaryData": {KEY: self.texts[k]}}, namespace=namespace)
                except (ClusterError, TimeoutError) as e:
                    failed.append(e)
                    return
                self.dirty.discard(k)
                self.puts += 1
                self.bytes_written += len(self.texts[k])

        async with anyio.create_task_group() as tg:
            for k in sorted(self.dirty):
                tg.start_soon(put, k)
        if failed:
            raise failed[0]
        return not refused


@dataclass(frozen=True, slots=True)
class Update:
    """A new publication as a follower took it in."""

    commit: str | None
    placed: dict[WorkloadId, tuple[Assignment, ...]]
    changed: frozenset[WorkloadId] | None
    """The workloads whose placements differ from the last update's (None: not known,
    look at every one)."""


class Reader:
    """A follower's side: the published placements as last taken in, and each part's
    digest, so a new index fetches and decodes only the parts whose digest changed. A
    part whose text does not match the index (written after the index was read, or
    torn) changes nothing: everything stays as it was, and the next poll reads the
    index again. The old single-document form (written by the previous version) is
    read as well."""

    def __init__(self) -> None:
        self.version: str | None = None
        """The index ConfigMap's resourceVersion last taken in."""
        self.index: Index | None = None
        self.rows: list[dict[str, Any]] = []
        """Per part: its workloads' rows as stored."""
        self.placed: dict[WorkloadId, tuple[Assignment, ...]] = {}
        self.commit: str | None = None
        self.legacy = PublishedParts()
        self.legacy_data: str | None = None
        self.looks = 0
        self.fetches = 0
        self.part_fetches = 0
        self.parts_decoded = 0
        self.updates = 0
        self.torn = 0
        """Metadata looks, index GETs, part GETs, parts decoded, updates made, and
        polls that found a part not matching its index."""

    def clear(self) -> None:
        self.version, self.index, self.rows, self.placed = None, None, [], {}
        self.commit, self.legacy_data = None, None
        self.legacy.clear()

    async def poll(self, client: KubeClient, namespace: str) -> Update | None:
        """The placements when a new publication was taken in, else None (nothing new,
        or not readable whole now: then nothing here changed)."""
        version = await published_version(client, namespace)
        self.looks += 1
        if version is None or version == self.version:
            return None
        try:
            cm = await get_configmap(client, NAME, namespace=namespace)
            self.fetches += 1
            if cm is None:
                return None
            version = (cm.get("metadata") or {}).get("resourceVersion")
            text = (cm.get("data") or {}).get(INDEX_KEY)
            if text is None:
                return self._legacy(version, (cm.get("binaryData") or {}).get(KEY))
            index = decode_index(text)
            fresh = self.index is None or self.index.parts != index.parts
            want = [k for k in range(index.parts)
                    if fresh or self.index is None or index.digests[k] != self.index.digests[k]]
            texts: dict[int, str] = {}
            for k in want:
                part = await get_configmap(client, part_name(k), namespace=namespace)
                self.part_fetches += 1
                got = (part or {}).get("binaryData") or {}
                data = got.get(KEY) if isinstance(got, dict) else None
                if not isinstance(data, str) or digest(data) != index.digests[k]:
                    self.torn += 1
                    log.info("shared_last_plan_part_changed", part=k)
                    return None  # newer (or older) than the index: read all again
                texts[k] = data
            decoded = {k: decode_part(t, k, index.parts) for k, t in texts.items()}
            self.parts_decoded += len(decoded)
            return self._take(version, index, decoded, fresh)
        except (ClusterError, TimeoutError) as e:
            log.warning("shared_last_plan_unreadable", error=f"{type(e).__name__}: {e}")
        except (KeyError, TypeError, ValueError, OSError, EOFError) as e:
            log.warning("shared_last_plan_unusable", error=f"{type(e).__name__}: {e}")
        return None

    def _take(self, version: Any, index: Index, decoded: Mapping[int, dict[str, Any]],
              fresh: bool) -> Update | None:
        """Everything built before anything held changes: a part that fails to build
        leaves all as it was."""
        rows = [{} for _ in range(index.parts)] if fresh else list(self.rows)
        built: dict[WorkloadId, tuple[Assignment, ...] | None] = {}
        for k, part in decoded.items():
            old = rows[k]
            for wid, r in part.items():
                if old.get(wid) != r:
                    built[WorkloadId(wid)] = assignments_of(r)
            for wid in old.keys() - part.keys():
                built[WorkloadId(wid)] = None
            rows[k] = part
        if fresh:
            placed = {wid: a for wid, a in built.items() if a is not None}
            changed: frozenset[WorkloadId] | None = None
        else:
            placed = dict(self.placed)
            for wid, a in built.items():
                if a is None:
                    placed.pop(wid, None)
                else:
                    placed[wid] = a
            changed = frozenset(built)
        same = not fresh and not built and index.commit == self.commit
        self.version = version if isinstance(version, str) else None
        self.index, self.rows, self.placed, self.commit = index, rows, placed, index.commit
        self.legacy_data = None
        self.legacy.clear()
        if same:
            return None
        self.updates += 1
        return Update(index.commit, placed, changed)

    def _legacy(self, version: Any, data: Any) -> Update | None:
        """The previous version's single document (an upgrade, or a leader not yet
        upgraded)."""
        if not isinstance(data, str):
            raise ValueError("neither an index nor a placements document")
        if data == self.legacy_data:
            self.version = version if isinstance(version, str) else None
            return None
        published = decode_published(data, self.legacy)
        if published is None:
            return None
        self.parts_decoded += 1
        self.version = version if isinstance(version, str) else None
        self.legacy_data, self.index, self.rows = data, None, []
        self.commit, self.placed = published[0], dict(published[1])
        self.updates += 1
        return Update(self.commit, self.placed, None)
