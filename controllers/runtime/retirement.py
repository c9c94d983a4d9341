"""Clusters whose Cluster file was removed: drained, then let go, across restarts.

The Manager keeps a removed cluster's adapter while its reconciler deletes every
workload we run there (`ClusterReconciler._drain`), then disconnects it. This class is
the bookkeeping: which clusters are retiring, how to reach each (the removed file held
that), and `<state dir>/retiring.json` (`controllers.persist.statefile`), so that a controller
restarted before a drain is done reconnects and finishes it. With a home cluster the
leader keeps the same document there (`controllers.runtime.handover`), and a replica that
takes over finishes the drains it started.
"""

from __future__ import annotations

from collections.abc import Set
from pathlib import Path
from typing import Any

import structlog

from clusters.kubeconfig import ConnectionSpec
from controllers.persist.statefile import (
    load_retiring,
    retiring_from_doc,
    retiring_to_doc,
    save_retiring,
)

log = structlog.get_logger()


class Retirement:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.names: set[str] = set()
        """Retiring now (shared with the reconciler, which drains these)."""
        self.reach: dict[str, ConnectionSpec] = {}
        """How to reach every connected cluster (a retiring one's file is gone)."""
        self._restored = False
        self._saved: dict[str, ConnectionSpec] | None = None
        self._shared: dict[str, ConnectionSpec] | None = None

    def restore(self, in_repo: Set[str]) -> dict[str, ConnectionSpec]:
        """Once per process: the removed clusters a previous one was still draining
        (not back in the repo), now retiring here too; the connections to open."""
        if self._restored:
            return {}
        self._restored = True
        out: dict[str, ConnectionSpec] = {}
        kept = self._shared if self._shared is not None else load_retiring(self.state_dir)
        self._shared = None
        for name, conn in sorted(kept.items()):
            if name not in in_repo and name not in self.names:
                self.names.add(name)
                self.reach[name] = out[name] = conn
                log.warning("cluster_retiring", cluster=name, restored=True)
        return out

    def update(self, connected: Set[str], in_repo: Set[str]) -> list[str]:
        """Start retiring connected clusters gone from the repo, stop for those back in
        it; the ones that started."""
        started = sorted(set(connected) - set(in_repo) - self.names)
        for name in started:
            self.names.add(name)
            log.warning("cluster_retiring", cluster=name)
        for name in sorted(self.names & set(in_repo)):
            self.names.discard(name)  # back in the repo before it was drained
            log.info("cluster_retirement_cancelled", cluster=name)
        self.save()
        return started

    def done(self, name: str) -> bool:
        """`name` is drained: forget it (False when it was not retiring)."""
        if name not in self.names:
            return False
        self.names.discard(name)
        self.save()
        self.reach.pop(name, None)
        log.info("cluster_retired", cluster=name)
        return True

    def save(self) -> None:
        clusters = {n: self.reach[n] for n in sorted(self.names) if n in self.reach}
        if clusters == self._saved:
            return
        try:
            save_retiring(self.state_dir, clusters)
        except OSError as e:  # say it; a restart would then forget these clusters
            log.warning("retiring_not_saved", error=f"{type(e).__name__}: {e}")
            return
        self._saved = clusters

    def to_doc(self) -> dict[str, Any]:
        """`retiring.json`'s body (also the home cluster's copy)."""
        return retiring_to_doc({n: self.reach[n] for n in sorted(self.names)
                                if n in self.reach})

    def take(self, doc: dict[str, Any]) -> bool:
        """The leader's copy wins: the clusters it was draining are restored (again)
        at the next `restore`; whether it names one this replica does not drain."""
        try:
            if doc.get("version") != 1:
                raise TypeError(f"version {doc.get('version')!r}")
            shared = retiring_from_doc(doc)
        except (AttributeError, KeyError, TypeError) as e:
            log.warning("shared_retiring_unusable", error=f"{type(e).__name__}: {e}")
            return False
        self._shared, self._restored = shared, False
        return bool(set(shared) - self.names)
