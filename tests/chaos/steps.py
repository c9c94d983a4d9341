"""The seeded step generator of the chaos test: what happens next to the fleet.

`Generator.next()` picks one step from the model of the repo and the fleet (never
from what the controller did: the sequence of steps depends on the seed alone, so
`AIFLEET_CHAOS_SEED=<n>` replays it). A step is a commit (the whole new tree and its
message), a ref move (force-push), or a fault (cluster down/up, apply errors, controller
restart or SIGKILL).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.chaos.fleet import (
    BY_ID,
    BY_PATH,
    CLUSTERS,
    JURISDICTIONS,
    WORKLOADS,
    cluster_doc,
    cluster_path,
    initial_files,
    jurisdiction_in,
)

Files = dict[str, bytes]
ALLOW_MASS = "Fleet-Allow: mass-deletion"
ALLOW_RETIRE = "Fleet-Allow: retire"
MOVED = ("clusters/", "policies/", "workloads/")


@dataclass(frozen=True)
class Commit:
    sha: str
    parent: str | None
    files: Files
    message: str


@dataclass(frozen=True)
class Step:
    kind: str
    text: str
    files: Files | None = None
    """commit steps: the new tree."""
    message: str = ""
    target: str = ""
    """force-push: the commit; faults: the cluster."""
    count: int = 0


@dataclass
class Model:
    """What the test knows of the repo and the fleet (no controller state in here)."""

    commits: dict[str, Commit] = field(default_factory=dict)
    head: str = ""
    tip: str | None = None
    """The head before a force-push rollback: where `forward` moves main back to."""
    down: set[str] = field(default_factory=set)
    home_down: bool = False
    """With leader election: the management cluster holding the Lease is down."""
    replicas: dict[str, int] = field(default_factory=lambda: {w.wid: w.replicas
                                                              for w in WORKLOADS})

    def files(self) -> Files:
        return self.commits[self.head].files

    def ancestors(self, sha: str) -> list[str]:
        """`sha`'s parents, nearest first."""
        out: list[str] = []
        cur = self.commits[sha].parent
        while cur is not None:
            out.append(cur)
            cur = self.commits[cur].parent
        return out

    def is_ancestor(self, old: str, new: str) -> bool:
        return old == new or old in self.ancestors(new)

    def chain(self, base: str | None, head: str) -> list[Commit]:
        """The commits after `base` up to `head` (all of head's history if base is not
        an ancestor)."""
        out = [self.commits[head]]
        for sha in self.ancestors(head):
            if sha == base:
                break
            out.append(self.commits[sha])
        return out


def _corrupt(doc: bytes, how: str) -> bytes:
    text = doc.decode()
    if how == "unclosed-brace":
        return text.replace("spec:\n", "spec: {\n", 1).encode()
    if how == "non-utf8":
        return doc.replace(b"image: registry.internal/", b"image: registry.internal/\xff\xfe")
    if how == "duplicate-key":
        return text.replace("  replicas:", "  replicas: 1\n  replicas:", 1).encode()
    if how == "tab-indent":
        return text.replace("  image:", "\timage:", 1).encode()
    if how == "kind-typo":
        return text.replace("kind: Workload", "kind: Wrokload", 1).encode()
    if how == "huge-int":
        lines = [("  replicas: " + "9" * 4301) if ln.startswith("  replicas:") else ln
                 for ln in text.splitlines()]
        return ("\n".join(lines) + "\n").encode()
    raise ValueError(how)


CORRUPTIONS = ("unclosed-brace", "non-utf8", "duplicate-key", "tab-indent", "kind-typo",
               "huge-int")


class Generator:
    def __init__(self, seed: int, *, leader_elect: bool) -> None:
        self.rng = random.Random(seed)
        self.leader_elect = leader_elect
        self.model = Model()
        self.corrupted = self.rng.randrange(len(CORRUPTIONS))

    # ------------------------------------------------------------------ helpers

    def _canonical(self, path: str) -> bytes | None:
        """What a restored file holds: the workload with its current replicas, the
        cluster with its current label (or the first commit's)."""
        if path in BY_PATH:
            w = BY_PATH[path]
            return w.doc(self.model.replicas[w.wid]).encode()
        return initial_files().get(path)

    def _damaged(self) -> list[str]:
        """Paths of the first commit missing or different at head (sorted)."""
        files = self.model.files()
        out = []
        for path in sorted(initial_files()):
            want = self._canonical(path)
            have = files.get(path)
            if have is None or (have != want and not path.startswith("clusters/")):
                out.append(path)
        return out

    def _trailer(self, *trailers: str) -> str:
        chosen = [t for t in trailers if self.rng.random() < 0.35]
        return ("\n\n" + "\n".join(chosen)) if chosen else ""

    # ------------------------------------------------------------------ steps

    def next(self) -> Step:
        m = self.model
        files = m.files()
        present = sorted(p for p in files if p in BY_PATH)
        clusters = sorted(n for n in CLUSTERS if cluster_path(n) in files)
        damaged = self._damaged()
        weights: dict[str, float] = {
            "delete-one": 2 if present else 0,
            "delete-many": 1 if len(present) >= 3 else 0,
            "folder-move": 0.6 if any(p.startswith(MOVED) for p in files) else 0,
            "delete-cluster": 1 if len(clusters) >= 2 else 0,
            "delete-all-clusters": 0.6 if clusters else 0,
            "corrupt": 2.5 if present else 0,
            "relabel": 1 if clusters else 0,
            "replicas": 2,
            "restore": 1 + 1.5 * len(damaged) if damaged else 0,
            "force-push": 1 if m.ancestors(m.head) else 0,
            "forward": 4 if m.tip is not None else 0,
            "revert": 1 if m.commits[m.head].parent is not None else 0,
            "down": 1.5 if len(m.down) < 2 else 0,
            "up": 3 * len(m.down),
            # The Lease's home: nobody may write while it is down, so keep it short.
            "home-down": 0.8 if self.leader_elect and not m.home_down else 0,
            "home-up": 4 if m.home_down else 0,
            "apply-errors": 1,
            "restart": 1,
            "sigkill": 0.7,
        }
        kinds = sorted(k for k, w in weights.items() if w > 0)
        kind = self.rng.choices(kinds, [weights[k] for k in kinds])[0]
        make: Callable[..., Step] = getattr(self, "_" + kind.replace("-", "_"))
        return make(files, present, clusters, damaged)

    def _commit(self, kind: str, text: str, new: Files, message: str) -> Step:
        return Step(kind, text, files=new, message=message)

    def _delete_one(self, files: Files, present: list[str], *_: object) -> Step:
        path = self.rng.choice(present)
        new = dict(files)
        del new[path]
        return self._commit("delete-one", f"delete {path}", new, f"remove {path}")

    def _delete_many(self, files: Files, present: list[str], *_: object) -> Step:
        n = self.rng.randint(len(present) * 3 // 10 + 1, len(present))
        gone = sorted(self.rng.sample(present, n))
        new = {p: d for p, d in files.items() if p not in gone}
        msg = f"remove {n} workloads" + self._trailer(ALLOW_MASS)
        return self._commit("delete-many", f"delete {n}/{len(present)} workload files "
                            f"{gone}{' [allowed]' if ALLOW_MASS in msg else ''}", new, msg)

    def _folder_move(self, files: Files, *_: object) -> Step:
        new = {("fleet/" + p if p.startswith(MOVED) else p): d for p, d in files.items()}
        msg = "restructure: git mv clusters policies workloads fleet/" + self._trailer(
            ALLOW_RETIRE, ALLOW_MASS)
        return self._commit("folder-move", "git mv clusters policies workloads fleet/"
                            + (f" [{msg.split(chr(10), 2)[-1].strip()}]"
                               if "Fleet-Allow" in msg else ""), new, msg)

    def _delete_cluster(self, files: Files, _p: object, clusters: list[str],
                        *_: object) -> Step:
        name = self.rng.choice(clusters)
        new = dict(files)
        del new[cluster_path(name)]
        return self._commit("delete-cluster", f"delete clusters/{name}.yaml", new,
                            f"retire {name}")

    def _delete_all_clusters(self, files: Files, _p: object, clusters: list[str],
                             *_: object) -> Step:
        new = {p: d for p, d in files.items() if not p.startswith("clusters/")}
        msg = "remove every Cluster file" + self._trailer(ALLOW_RETIRE)
        return self._commit("delete-all-clusters", f"delete all {len(clusters)} Cluster files"
                            f"{' [allowed]' if ALLOW_RETIRE in msg else ''}", new, msg)

    def _corrupt(self, files: Files, present: list[str], *_: object) -> Step:
        path = self.rng.choice(present)
        # In turn, not drawn: every kind comes up even in a short run.
        how = CORRUPTIONS[self.corrupted % len(CORRUPTIONS)]
        self.corrupted += 1
        new = dict(files)
        new[path] = _corrupt(self._canonical(path) or files[path], how)
        return self._commit("corrupt", f"corrupt {path} ({how})", new, f"edit {path}")

    def _relabel(self, files: Files, _p: object, clusters: list[str], *_: object) -> Step:
        name = self.rng.choice(clusters)
        was = jurisdiction_in(files, name)
        to = self.rng.choice([j for j in JURISDICTIONS if j != was])
        new = dict(files)
        new[cluster_path(name)] = cluster_doc(name, to).encode()
        return self._commit("relabel", f"relabel {name} {was} -> {to}", new,
                            f"{name} is in {to}")

    def _replicas(self, files: Files, *_: object) -> Step:
        w = self.rng.choice([w for w in WORKLOADS if not w.gang])
        n = self.rng.randint(2 if w.spread else 1, 3)
        self.model.replicas[w.wid] = n
        new = dict(files)
        if w.path in files:
            new[w.path] = w.doc(n).encode()
        return self._commit("replicas", f"{w.wid} replicas -> {n}", new,
                            f"scale {w.wid} to {n}")

    def _restore(self, files: Files, _p: object, _c: object, damaged: list[str], *,
                 everything: bool = False) -> Step:
        new = {p: d for p, d in files.items() if not p.startswith("fleet/")}
        if everything or len(new) != len(files) or self.rng.random() < 0.3:
            chosen = damaged  # undo a folder move, or fix everything at once
        else:
            chosen = sorted(self.rng.sample(damaged, self.rng.randint(1, len(damaged))))
        for path in chosen:
            new[path] = self._canonical(path) or b""
        return self._commit("restore", f"restore {len(chosen)} files {chosen[:4]}"
                            f"{'...' if len(chosen) > 4 else ''}", new,
                            f"restore {len(chosen)} files")

    def _revert(self, *_: object) -> Step:
        m = self.model
        parent = m.commits[m.head].parent
        assert parent is not None
        msg = m.commits[m.head].message.splitlines()[0]
        return self._commit("revert", f"revert {m.head[:8]} ({msg})",
                            dict(m.commits[parent].files), f'Revert "{msg}"')

    def _force_push(self, *_: object) -> Step:
        m = self.model
        older = m.ancestors(m.head)[: 3]
        target = self.rng.choice(older)
        return Step("force-push", f"force-push main back {older.index(target) + 1} commit(s) "
                    f"to {target[:8]}", target=target)

    def _forward(self, *_: object) -> Step:
        assert self.model.tip is not None
        return Step("forward", f"force-push main forward to {self.model.tip[:8]}",
                    target=self.model.tip)

    def _down(self, *_: object) -> Step:
        up = sorted(set(CLUSTERS) - self.model.down)
        name = self.rng.choice(up)
        return Step("down", f"cluster {name} down", target=name)

    def _up(self, *_: object) -> Step:
        name = self.rng.choice(sorted(self.model.down))
        return Step("up", f"cluster {name} up", target=name)

    def _home_down(self, *_: object) -> Step:
        return Step("home-down", "Lease cluster (management home) down", target="home")

    def _home_up(self, *_: object) -> Step:
        return Step("home-up", "Lease cluster (management home) up", target="home")

    def _apply_errors(self, *_: object) -> Step:
        name = self.rng.choice(sorted(set(CLUSTERS) - self.model.down) or sorted(CLUSTERS))
        n = self.rng.randint(2, 12)
        return Step("apply-errors", f"next {n} writes to {name} fail (503)", target=name,
                    count=n)

    def repair(self) -> Step:
        """What an operator commits when the controller crash-loops: every damaged file
        restored (not drawn from the seed's sequence: it depends on the controller)."""
        damaged = self._damaged() or ["policies/residency.yaml"]
        return self._restore(self.model.files(), [], [], damaged, everything=True)

    def _restart(self, *_: object) -> Step:
        return Step("restart", "controller restart (cancel, new Manager, same state dir)")

    def _sigkill(self, *_: object) -> Step:
        return Step("sigkill", "SIGKILL the controller (`fleet run` subprocess), start again")

    # ------------------------------------------------------------------ bookkeeping

    def committed(self, step: Step, sha: str) -> None:
        m = self.model
        assert step.files is not None
        m.commits[sha] = Commit(sha, m.head or None, step.files, step.message)
        m.head = sha  # on a rolled-back head, `tip` stays: `forward` drops these commits

    def moved(self, step: Step) -> None:
        m = self.model
        if step.kind == "force-push" and m.tip is None:
            m.tip = m.head
        if step.kind == "forward":
            m.tip = None
        m.head = step.target

    def fault(self, step: Step) -> None:
        if step.kind == "down":
            self.model.down.add(step.target)
        elif step.kind == "up":
            self.model.down.discard(step.target)
        elif step.kind in ("home-down", "home-up"):
            self.model.home_down = step.kind == "home-down"


def workloads_in(files: Files) -> set[str]:
    """Workload ids whose file exists where the controller reads it (valid or not)."""
    return {BY_PATH[p].wid for p in files if p in BY_PATH}


def clusters_in(files: Files) -> set[str]:
    return {n for n in CLUSTERS if cluster_path(n) in files}


__all__ = ["ALLOW_MASS", "ALLOW_RETIRE", "BY_ID", "Commit", "Generator", "Model", "Step",
           "clusters_in", "workloads_in"]
