"""Reading a fleet repo into a `FleetSpec`: files -> documents -> models -> cross-checks.

Each file is parsed on its own (`parse_file`, pure given its bytes and path), and the
results are cached by content: reading the next commit parses only the files whose
blob changed, so the work per commit grows with the change, not the repo. The cheap
cross-document checks (`fleet.spec.assemble`) then run over all of them.

The layout rules of the format live here, because they are about paths:
`clusters/<name>.yaml` holds one Cluster; `workloads/<team>/...` holds one Workload
whose namespace is `<team>`; `policies/` holds ResidencyPolicy, TeamQuota, Guardrails and
Owners documents.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pydantic
import pygit2

from fleet.diagnostics import Diagnostic, FieldLines, SourceRef
from fleet.ids import WorkloadId
from fleet.models import API_VERSION, KINDS, Document, Workload
from fleet.render.admission import workload_problems
from fleet.safety import (
    kept_from_previous,
    path_workload_id,
    reserved_key_problem,
    tenant_namespace_problem,
    workload_label_problem,
)
from fleet.sharing import Sharer
from fleet.spec import FleetSpec, assemble
from workloads import diskcache
from workloads.errors import RepoNotFound, WorkloadsError
from workloads.forkmap import Background, fork_map
from workloads.history import History, git_history
from workloads.source import (
    FLEET_FOLDERS,
    YAML_SUFFIXES,
    FileEntry,
    FileTooLarge,
    git_files,
    open_repository,
    resolve_tree,
    subtree,
    worktree_files,
)
from workloads.yamlio import MAX_FILE_BYTES, YamlDocument, read_yaml

_FOLDER_KINDS = {
    "clusters": ("Cluster",),
    "workloads": ("Workload",),
    "policies": ("ResidencyPolicy", "TeamQuota", "Guardrails", "Owners"),
}
_KIND_HOME = {
    "Cluster": "clusters/<name>.yaml",
    "Workload": "workloads/<team>/",
    "ResidencyPolicy": "policies/",
    "TeamQuota": "policies/",
    "Guardrails": "policies/",
    "Owners": "policies/",
}


SHARER_ENTRIES_PER_FILE = 8
SHARER_SLACK = 10_000


@dataclass(frozen=True, slots=True)
class ParsedFile:
    documents: tuple[tuple[Document, SourceRef], ...] = ()
    errors: tuple[Diagnostic, ...] = ()
    invalid: tuple[tuple[WorkloadId, Diagnostic], ...] = ()
    path_id: WorkloadId | None = None
    """A Workload file with errors and no Workload id read from it: the workload its
    path names (`fleet.safety.path_workload_id`), Invalid unless another file
    declares it."""

    def __reduce__(self) -> tuple[object, ...]:
        return (ParsedFile, (self.documents, self.errors, self.invalid,  # see SourceRef
                             self.path_id))


@dataclass(slots=True)
class ParseCache:
    """Parsed files by (path, content key). `retain` drops what the last read did not use.

    `sharer` makes what a new parse spells like an earlier one the same object
    (`fleet.sharing`). Its table keeps every value it has seen, also those of files
    the cache has dropped since, so once it holds more than `SHARER_ENTRIES_PER_FILE`
    entries per cached file it starts afresh: what is parsed after shares with what is
    parsed after, and what is held keeps its sharing."""

    entries: dict[tuple[str, str, str], ParsedFile] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    sharer: Sharer = field(default_factory=Sharer)

    def retain(self, used: set[tuple[str, str, str]]) -> None:
        for k in [k for k in self.entries if k not in used]:
            del self.entries[k]
        if len(self.sharer) > SHARER_ENTRIES_PER_FILE * len(self.entries) + SHARER_SLACK:
            self.sharer = Sharer()

    @classmethod
    def stored(cls, repo: pygit2.Repository) -> ParseCache:
        """The cache kept in the repository's Git directory (`diskcache`), or an empty
        one."""
        cache = cls()
        stored = diskcache.load(repo, "parsed")
        if isinstance(stored, dict):
            cache.entries = stored
        return cache

    def store(self, repo: pygit2.Repository, background: Background | None = None) -> None:
        """Keep it in the Git directory when this read parsed anything; written by
        `background` (while the caller goes on) when given."""
        if not self.misses:
            return
        entries = self.entries
        if background is not None:
            background.run(lambda: diskcache.save(repo, "parsed", entries))
        else:
            diskcache.save(repo, "parsed", entries)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One read of a fleet repo: the commit (None for a worktree) and its spec."""

    commit: str | None
    spec: FleetSpec
    files: int
    message: str = ""
    """The commit's message (its `Fleet-Allow:` trailers allow held deletions)."""
    edited: tuple[str, frozenset[WorkloadId]] | None = None
    """Read from the snapshot of another commit (`load_changed`): that commit, and
    the workloads whose documents may differ from its spec's (none is gone); None:
    read whole."""


def read_fleet(
    path: str | os.PathLike[str] = ".",
    ref: str = "HEAD",
    *,
    worktree: bool = False,
    cache: ParseCache | None = None,
    parallel: bool = False,
    controller_namespace: str | None = None,
) -> Snapshot:
    """Read the fleet at `path` (a repo or a folder in one) at `ref`, or on disk.
    `parallel`, `controller_namespace`: see `load_entries`. A broken Workload file
    keeps what it held at the commits before (`workloads.history`)."""
    if worktree:
        history: History | None = None
        try:
            repo, prefix = open_repository(path)
            head = None if repo.head_is_unborn else str(repo.head.target)
            history = git_history(repo, head, prefix, inclusive=True)
        except RepoNotFound:  # not in a repo: show paths as given
            prefix = os.fspath(path).rstrip("/") if os.fspath(path) not in (".", "") else ""
        entries = list(worktree_files(path, prefix))
        return Snapshot(None, load_entries(entries, cache, parallel=parallel,
                                           history=history,
                                           controller_namespace=controller_namespace),
                        len(entries))
    repo, prefix = open_repository(path)
    tree = resolve_tree(repo, ref, prefix)
    entries = list(git_files(tree))
    return Snapshot(tree.commit, load_entries(entries, cache, parallel=parallel,
                                              history=git_history(repo, tree.commit, prefix),
                                              controller_namespace=controller_namespace),
                    len(entries))


def read_fleet_cached(path: str | os.PathLike[str] = ".", ref: str = "HEAD", *,
                      parallel: bool = False, background: Background | None = None,
                      controller_namespace: str | None = None) -> Snapshot:
    """`read_fleet` of a commit through the parse cache in the Git directory
    (`diskcache`), which `fleet plan --base --head` shares: a CI job that validates
    the PR's head first leaves the plan only the files head changed to parse. The
    cache is written (by `background`, while the caller goes on) only when given one."""
    repo, _ = open_repository(path)
    cache = ParseCache.stored(repo)
    snap = read_fleet(path, ref, cache=cache, parallel=parallel,
                      controller_namespace=controller_namespace)
    if background is not None:
        cache.store(repo, background)
    return snap


@dataclass(frozen=True, slots=True)
class Change:
    """One file a commit added or modified, as a tree diff reports it."""

    path: str
    """Relative to the fleet root."""
    old: str | None
    """The blob id before (None: added)."""
    entry: FileEntry
    """The file now."""


def git_changes(repo: pygit2.Repository, old_commit: str, new_commit: str, prefix: str
                ) -> tuple[Change, ...] | None:
    """The YAML files under `workloads/` that `new_commit` adds or modifies against
    `old_commit` (`Tree.diff_to_tree`, no rename detection), or None when it changes
    anything else a read of the fleet depends on: a Cluster or policy file, a deleted
    file or folder, a symlink or a change of type. Files outside the fleet folders and
    non-YAML files are read by no one, so they are left out."""
    try:
        old = subtree(repo, repo[old_commit].peel(pygit2.Commit).tree, prefix, "")
        new = subtree(repo, repo[new_commit].peel(pygit2.Commit).tree, prefix, "")
    except (KeyError, ValueError, pygit2.GitError, WorkloadsError):
        return None
    if old is None or new is None:
        return None
    out: list[Change] = []
    odb = repo.odb
    blobs = (pygit2.enums.FileMode.BLOB, pygit2.enums.FileMode.BLOB_EXECUTABLE)
    for delta in old.diff_to_tree(new).deltas:
        path = delta.new_file.path
        folder = path.split("/", 1)[0]
        if folder not in FLEET_FOLDERS and delta.old_file.path.split("/", 1)[0] \
                not in FLEET_FOLDERS:
            continue
        if folder != "workloads" or delta.status not in (
                pygit2.enums.DeltaStatus.ADDED, pygit2.enums.DeltaStatus.MODIFIED):
            return None
        added = delta.status == pygit2.enums.DeltaStatus.ADDED
        if delta.new_file.mode not in blobs or (
                not added and delta.old_file.mode not in blobs):
            return None
        if not path.endswith(YAML_SUFFIXES):
            continue
        oid = delta.new_file.id

        def read(oid: pygit2.Oid = oid) -> bytes:
            _, size = odb.read_header(oid)
            if size > MAX_FILE_BYTES:
                raise FileTooLarge(int(size))
            return bytes(odb.read(oid)[1])

        display = f"{prefix}/{path}" if prefix else path
        out.append(Change(path, None if added else str(delta.old_file.id),
                          FileEntry(path, display, -1, str(oid), read)))
    return tuple(out)


def load_changed(before: Snapshot, commit: str, changes: Iterable[Change],
                 cache: ParseCache, *, controller_namespace: str | None = None
                 ) -> Snapshot | None:
    """The snapshot of `commit`, read from `before` (the snapshot of the commit
    `changes` were diffed against, read through `cache`) by parsing only the files
    that changed (`git_changes`); None when that cannot be exact (a changed file with
    errors, or that held another workload before; see
    `fleet.spec.FleetSpec.with_edited_workloads`): then read it whole
    (`load_entries`), whose answer this equals."""
    edits: dict[WorkloadId, tuple[Workload, SourceRef]] = {}
    old_keys: list[tuple[str, str, str]] = []
    new: list[tuple[tuple[str, str, str], ParsedFile]] = []
    added = 0
    for c in changes:
        key = (c.entry.path, c.entry.display, c.entry.key)
        parsed = cache.entries.get(key)
        if parsed is None:
            parsed = _parse_entry(c.entry)
            cache.misses += 1
        else:
            cache.hits += 1
        wid = _only_workload(parsed)
        if wid is None or wid in edits:
            return None
        if c.old is None:
            added += 1
        else:
            old_key = (c.entry.path, c.entry.display, c.old)
            was = cache.entries.get(old_key)
            if was is None or _only_workload(was) != wid:
                return None
            old_keys.append(old_key)
        doc, src = parsed.documents[0]
        assert isinstance(doc, Workload)
        if controller_namespace is not None and tenant_namespace_problem(
                doc.metadata.namespace or "", controller_namespace) is not None:
            return None
        edits[wid] = (doc, src)
        new.append((key, parsed))
    spec = before.spec.with_edited_workloads(edits)
    if spec is None:
        return None
    for k in old_keys:  # as `ParseCache.retain` after a whole read
        cache.entries.pop(k, None)
    cache.entries.update(new)
    assert before.commit is not None
    return Snapshot(commit, spec, before.files + added,
                    edited=(before.commit, frozenset(edits)))


def _only_workload(parsed: ParsedFile) -> WorkloadId | None:
    """The id of the one valid Workload a file holds and nothing else, or None."""
    if parsed.errors or parsed.invalid or parsed.path_id is not None or \
            len(parsed.documents) != 1:
        return None
    doc = parsed.documents[0][0]
    return doc.id if isinstance(doc, Workload) else None


def load_entries(entries: Iterable[FileEntry], cache: ParseCache | None = None, *,
                 parallel: bool = False, history: History | None = None,
                 controller_namespace: str | None = None) -> FleetSpec:
    """The spec of these files, parsing only what `cache` lacks. `parallel`: a one-shot
    command may spread a large parse over a forked helper (`workloads.forkmap`).
    `history`: what each Workload file held before (`workloads.history`): a workload
    a file held that this read cannot read stays Invalid, not gone
    (`fleet.safety.kept_from_previous`). `controller_namespace`: the controller's own
    namespace, reserved as `aifleet-*` is (`fleet.safety.tenant_namespace_problem`).
    That check runs here, after the cache: a parsed file (in memory or in the Git
    directory) never depends on the namespace, so no cache can serve a result made
    for another one."""
    entries = list(entries)
    keys = [(e.path, e.display, e.key) for e in entries]
    cacheable = [cache is not None and bool(e.key) and not e.symlink for e in entries]
    found: list[ParsedFile | None] = [
        cache.entries.get(k) if cache is not None and ok else None
        for k, ok in zip(keys, cacheable, strict=True)]
    missing = [i for i, p in enumerate(found) if p is None]
    todo = [entries[i] for i in missing]
    parsed_now = fork_map(_parse_entry, todo) if parallel else list(map(_parse_entry, todo))
    sharer = cache.sharer if cache is not None else Sharer()
    parsed_now = [_shared(p, sharer) for p in parsed_now]
    for i, parsed in zip(missing, parsed_now, strict=True):
        found[i] = parsed
        if cacheable[i]:  # only ever True with a cache
            assert cache is not None
            cache.entries[keys[i]] = parsed
    if cache is not None:
        new = sum(cacheable[i] for i in missing)
        cache.misses += new
        cache.hits += sum(cacheable) - new

    docs: list[tuple[Document, SourceRef]] = []
    errors: list[Diagnostic] = []
    invalid: dict[WorkloadId, list[Diagnostic]] = {}
    unreadable: dict[str, tuple[str, Diagnostic]] = {}  # path -> display, first error
    guesses: list[tuple[str, WorkloadId, Diagnostic]] = []
    for entry, one in zip(entries, found, strict=True):
        assert one is not None
        docs.extend(one.documents)
        errors.extend(one.errors)
        for wid, d in one.invalid:
            invalid.setdefault(wid, []).append(d)
        if one.errors and entry.path.startswith("workloads/") and not any(
                isinstance(doc, Workload) for doc, _ in one.documents):
            unreadable[entry.path] = (entry.display, one.errors[0])
        if one.path_id is not None:
            guesses.append((entry.path, one.path_id, one.errors[0]))
    if cache is not None:
        cache.retain(set(keys))
    if controller_namespace is not None:
        docs = _reserve_namespace(docs, errors, invalid, controller_namespace)
    valid = {d.id for d, _ in docs if isinstance(d, Workload)}
    held = history(sorted(unreadable)) if history is not None and unreadable else {}
    for wid, path in kept_from_previous(held, unreadable, {*invalid, *valid}).items():
        display, first = unreadable[path]
        invalid.setdefault(wid, []).append(Diagnostic(
            display, first.line,
            f"{wid} was defined in this file at an earlier commit and the file no "
            "longer reads: it stays Invalid, and what it runs is kept",
            "Workload", wid))
    # A name guessed from a broken file's path counts only where neither a document
    # nor the file's history says what the file holds.
    for path, wid, d in guesses:
        if wid not in valid and not held.get(path):
            invalid.setdefault(wid, []).append(d)
    return assemble(docs, errors, invalid)


def _reserve_namespace(docs: list[tuple[Document, SourceRef]], errors: list[Diagnostic],
                       invalid: dict[WorkloadId, list[Diagnostic]], namespace: str
                       ) -> list[tuple[Document, SourceRef]]:
    """The documents less the Workloads of the team folder named like the controller's
    namespace, each Invalid with a diagnostic at its `metadata.namespace` line."""
    kept: list[tuple[Document, SourceRef]] = []
    for doc, src in docs:
        problem = tenant_namespace_problem(doc.metadata.namespace or "", namespace) \
            if isinstance(doc, Workload) else None
        if problem is None:
            kept.append((doc, src))
            continue
        assert isinstance(doc, Workload)
        d = src.at(problem, "metadata", "namespace", kind="Workload", name=doc.id)
        errors.append(d)
        invalid.setdefault(doc.id, []).append(d)
    return kept


def _shared(parsed: ParsedFile, sharer: Sharer) -> ParsedFile:
    """`parsed` with its documents' equal parts, and their field paths, one object with
    those of every file `sharer` has seen."""
    if not parsed.documents:
        return parsed
    docs = tuple((sharer.share(doc), _shared_source(src, sharer))
                 for doc, src in parsed.documents)
    return ParsedFile(docs, parsed.errors, parsed.invalid, parsed.path_id)


def _shared_source(src: SourceRef, sharer: Sharer) -> SourceRef:
    lines = src.field_lines
    if not isinstance(lines, FieldLines):
        return src
    return SourceRef(src.file, src.line, lines.with_paths(sharer.share_paths(lines.paths)))


def _parse_entry(entry: FileEntry) -> ParsedFile:
    return _keep_path_id(entry.path, _parse_entry_unchecked(entry))


def _parse_entry_unchecked(entry: FileEntry) -> ParsedFile:
    if entry.symlink:
        return ParsedFile(errors=(Diagnostic(
            entry.display, None,
            "is a symlink: symlinks are never followed in a fleet repo; commit the file itself",
        ),))
    if entry.size > MAX_FILE_BYTES:  # on disk: known before it is opened
        return _too_large(entry, entry.size)
    try:
        data = entry.read()
    except FileTooLarge as e:  # a Git blob: its header says so as it is read
        return _too_large(entry, e.size)
    except OSError as e:
        return ParsedFile(errors=(Diagnostic(entry.display, None, f"cannot read: {e.strerror}"),))
    return parse_file(entry.path, entry.display, data)


def _keep_path_id(path: str, parsed: ParsedFile) -> ParsedFile:
    """A Workload file with errors and no Workload read from it (it does not parse, or
    holds nothing that names a workload) is still the workload its path names
    (`ParsedFile.path_id`), so what that workload runs is kept."""
    if not parsed.errors or parsed.invalid or not path.startswith("workloads/") or any(
            isinstance(doc, Workload) for doc, _ in parsed.documents):
        return parsed
    wid = path_workload_id(path, None)
    if wid is None:
        return parsed
    return ParsedFile(parsed.documents, parsed.errors, parsed.invalid, wid)


def _too_large(entry: FileEntry, size: int) -> ParsedFile:
    return ParsedFile(errors=(Diagnostic(
        entry.display, None, f"file is {size} bytes, over the 1 MiB limit: not read"),))


def parse_file(path: str, display: str, data: bytes) -> ParsedFile:
    """Parse one file of the fleet repo: its documents, its errors, its invalid workloads."""
    parts = path.split("/")
    folder = parts[0]
    allowed = _FOLDER_KINDS.get(folder, ())
    layout = _layout_problem(parts)
    if layout is not None:
        return ParsedFile(errors=(Diagnostic(display, None, layout),))

    yf = read_yaml(data)
    errors = [Diagnostic(display, e.line, e.message) for e in yf.errors]
    out: list[tuple[Document, SourceRef]] = []
    invalid: list[tuple[WorkloadId, Diagnostic]] = []
    workload_docs: list[tuple[YamlDocument, WorkloadId | None]] = []
    cluster_docs: list[YamlDocument] = []

    for ydoc in yf.documents:
        src = SourceRef(display, ydoc.line, FieldLines.of(ydoc.lines))
        raw = ydoc.value
        kind = raw.get("kind") if isinstance(raw, dict) else None
        # Anything in a team folder is meant as that team's Workload (a `kind:` typo
        # too); its id comes from the folder, whatever namespace it declares.
        wid = path_workload_id(path, _raw_name(raw)) if folder == "workloads" else None
        problem = _header_problem(raw, allowed, folder)
        if problem is not None:
            msg, field_path = problem
            d = src.at(msg, *field_path, kind=kind if isinstance(kind, str) else None)
            errors.append(d)
            if wid is not None:
                invalid.append((wid, d))
            continue
        assert isinstance(kind, str)
        if kind == "Workload":
            workload_docs.append((ydoc, wid))
        elif kind == "Cluster":
            cluster_docs.append(ydoc)
        model = KINDS[kind]
        try:
            doc = model.model_validate(raw)
        except pydantic.ValidationError as e:
            name = wid or _raw_name(raw)
            diags = [src.at(_message(err), *err["loc"], kind=kind, name=name)
                     for err in e.errors(include_url=False)]
            errors.extend(diags)
            if wid is not None:
                invalid.extend((wid, d) for d in diags)
            continue
        if isinstance(doc, Workload):
            assert wid is not None  # a Workload has a name and lives in a team folder
            diags = [*_tenancy_problems(doc, src, parts[1], wid),
                     *_admission_problems(doc, src, wid)]
            if diags:
                errors.extend(diags)
                invalid.extend((wid, d) for d in diags)
                continue
        out.append((doc, src))

    if len(workload_docs) > 1:
        first_line = workload_docs[0][0].line
        for ydoc, wid in workload_docs[1:]:
            errors.append(Diagnostic(
                display, ydoc.line,
                f"a Workload file holds exactly one Workload; another one starts at line "
                f"{first_line}: every Workload in this file is refused",
                "Workload", wid,
            ))
        refused = {wid for _, wid in workload_docs if wid is not None}
        d = Diagnostic(display, first_line,
                       f"file holds {len(workload_docs)} Workloads; a Workload file holds one",
                       "Workload")
        invalid.extend((wid, d) for wid in sorted(refused))
        out = [(doc, src) for doc, src in out if not isinstance(doc, Workload)]
    if len(cluster_docs) > 1:
        errors.append(Diagnostic(
            display, cluster_docs[1].line,
            "a Cluster file holds exactly one Cluster (clusters/<name>.yaml): "
            "every Cluster in this file is refused", "Cluster",
        ))
        out = [(doc, src) for doc, src in out if doc.kind != "Cluster"]
    return _keep_path_id(path, ParsedFile(tuple(out), tuple(errors), tuple(invalid)))


def _admission_problems(doc: Workload, src: SourceRef, wid: WorkloadId) -> list[Diagnostic]:
    """What the API server would refuse of the objects rendered from `doc`
    (`fleet.render.admission`), at the field that causes it."""
    return [src.at(p.message, *p.path, kind="Workload", name=wid)
            for p in workload_problems(doc)]


def _tenancy_problems(doc: Workload, src: SourceRef, team: str, wid: WorkloadId
                      ) -> list[Diagnostic]:
    """What a team folder may not write (`fleet.safety`, tenancy): another namespace, a
    reserved one, the controller's label and annotation prefix."""
    out: list[Diagnostic] = []
    if doc.metadata.namespace != team:
        out.append(src.at(
            f"metadata.namespace {doc.metadata.namespace} does not match its folder "
            f"workloads/{team}/ (the folder is the team)",
            "metadata", "namespace", kind="Workload", name=wid))
    reserved = tenant_namespace_problem(team)
    if reserved is not None:
        out.append(src.at(reserved, "metadata", "namespace", kind="Workload", name=wid))
    too_long = workload_label_problem(team, doc.metadata.name)
    if too_long is not None:
        out.append(src.at(too_long, "metadata", "name", kind="Workload", name=wid))
    for field_name, keys in (("labels", doc.metadata.labels),
                             ("annotations", doc.metadata.annotations)):
        for key in sorted(keys):
            problem = reserved_key_problem(key)
            if problem is not None:
                out.append(src.at(f"metadata.{field_name}.{problem}", "metadata",
                                  field_name, key, kind="Workload", name=wid))
    return out


def _layout_problem(parts: list[str]) -> str | None:
    if parts[0] == "clusters" and len(parts) != 2:
        return "Cluster files live directly in clusters/ (clusters/<name>.yaml)"
    if parts[0] == "workloads" and len(parts) < 3:
        return "Workload files live in a team folder: workloads/<team>/<workload>.yaml"
    if parts[0] == "workloads":
        team = parts[1]
        if len(team) > 63 or not team.replace("-", "a").isalnum() or team != team.lower() \
                or team.startswith("-") or team.endswith("-"):
            return (f"team folder {team!r} is not a DNS-1123 label, so it cannot be a "
                    "namespace")
    return None


def _header_problem(
    raw: Any, allowed: tuple[str, ...], folder: str
) -> tuple[str, tuple[str, ...]] | None:
    if not isinstance(raw, dict):
        return ("a document must be a mapping with apiVersion, kind, metadata and spec", ())
    api = raw.get("apiVersion")
    if api != API_VERSION:
        what = "missing" if api is None else f"{api!r}"
        return (f"apiVersion must be {API_VERSION}, got {what}", ("apiVersion",))
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:  # `kind: [a]` is unhashable
        what = "missing" if kind is None else f"unknown kind {kind!r}"
        return (f"{what}: expected one of {', '.join(KINDS)}", ("kind",))
    if kind not in allowed:
        return (f"a {kind} does not belong in {folder}/: it goes in {_KIND_HOME[kind]}",
                ("kind",))
    return None


def _raw_name(raw: Any) -> str | None:
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else None


def _message(err: Any) -> str:
    """A pydantic error as a sentence that names the field in YAML spelling."""
    loc = _dotted(err["loc"])
    typ = err["type"]
    if typ == "extra_forbidden":
        return f"{loc}: unknown field (not part of aifleet.dev/v1alpha1; check the spelling)"
    if typ == "missing":
        return f"{loc}: required field is missing"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if typ in ("literal_error", "enum") or typ.endswith("_type") or typ.endswith("_parsing"):
        msg = f"{msg}, got {err.get('input')!r}"
    return f"{loc}: {msg}" if loc else msg


def _dotted(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
