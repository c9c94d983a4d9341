"""A whole fleet on one machine: a local Git repo, simulated clusters, the controller.

What `fleet demo`, the end-to-end tests and `bench/e2e.py` share: a temp folder with
- `fleet/`: a Git repository (pygit2, branch main) seeded from a folder or from files,
  to which steps commit as a person would;
- `kubeconfig`: one context per simulated cluster (named after it), also exported as
  `FLEET_KUBECONFIG`, the variable the example Cluster files reference;
- `state/`: the controller's Git mirror;
- optionally (`start_home`) a management cluster, not a fleet member, for the leader
  Lease and shared state, reached through `home-kubeconfig`.

The controller is the real `Manager`, in-process, over real HTTP to the simulated API
servers; nothing is patched.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio

from clusters.adapter import AdapterOptions
from clusters.sim import SimClusterSpec, SimFleet, spec_from_cluster, start_sim
from controllers.runtime.manager import Manager
from controllers.settings import Settings
from workloads.loader import read_fleet
from workloads.scratch import FleetRepo


def folder_files(root: Path) -> dict[str, bytes]:
    """Every regular file under `root` (relative POSIX paths), symlinks left out."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


class Sandbox:
    def __init__(self, root: Path, files: Mapping[str, str | bytes]) -> None:
        self.root = root
        self.repo = FleetRepo(root / "fleet")
        self.first_commit = self.repo.commit(files, "Initial fleet")
        self.kubeconfig = root / "kubeconfig"
        self.sim: SimFleet | None = None
        self.home: SimFleet | None = None
        self.home_kubeconfig = root / "home-kubeconfig"

    async def start_clusters(self, **sim_options: Any) -> SimFleet:
        """Simulated clusters for the Cluster files of the first commit."""
        spec = read_fleet(self.repo.path, self.first_commit).spec
        specs = [spec_from_cluster(c) for _, c in sorted(spec.clusters.items())]
        self.sim = await start_sim(specs, **sim_options)
        self.sim.write_kubeconfig(self.kubeconfig)
        os.environ["FLEET_KUBECONFIG"] = str(self.kubeconfig)
        return self.sim

    async def start_home(self) -> SimFleet:
        """A simulated management cluster (no GPU nodes; context `home`) for the Lease
        and shared state; `settings(home=True)` points the controller at it."""
        self.home = await start_sim([SimClusterSpec("home", ())])
        self.home.write_kubeconfig(self.home_kubeconfig)
        return self.home

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "repo": str(self.repo.path), "state_dir": self.root / "state",
            "kubeconfig": str(self.kubeconfig), "listen": "127.0.0.1:0",
            "poll_interval": 2.0, "resync_interval": 30.0, "unreachable_after": 2.0,
        }
        if overrides.pop("home", False):
            values["home_kubeconfig"] = str(self.home_kubeconfig)
        values.update(overrides)
        return Settings(**values)

    @contextlib.asynccontextmanager
    async def controller(self, settings: Settings | None = None, *,
                         adapter_options: AdapterOptions | None = None,
                         **manager_options: Any) -> AsyncIterator[Manager]:
        """The real Manager running in a task group for the duration of the block."""
        m = Manager(settings or self.settings(), adapter_options=adapter_options,
                    **manager_options)
        async with running(m):
            yield m

    async def close(self) -> None:
        if self.sim is not None:
            await self.sim.close()
            self.sim = None
        if self.home is not None:
            await self.home.close()
            self.home = None


@contextlib.asynccontextmanager
async def running(m: Manager) -> AsyncIterator[Manager]:
    """`m` running in a task group for the duration of the block, cancelled at its end
    (the sandbox's controllers and the benches' replicas alike)."""
    async with anyio.create_task_group() as tg:
        await tg.start(m.run)
        try:
            yield m
        finally:
            tg.cancel_scope.cancel()


async def until(predicate: Callable[[], bool], within: float, *, interval: float = 0.1,
                what: str = "condition") -> float:
    """Wait until `predicate()` holds; the seconds it took. TimeoutError names `what`."""
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > within:
            raise TimeoutError(f"{what} not reached within {within:.0f} s")
        await anyio.sleep(interval)
    return time.perf_counter() - started


def synced(doc: Mapping[str, Any], commit: str | None = None) -> tuple[int, int]:
    """(placed workloads synced, placed workloads) in a status document; with `commit`,
    only once that commit is the applied one."""
    placed = [w for w in doc["workloads"] if w["status"] == "Placed"]
    if commit is not None and doc["source"]["appliedCommit"] != commit:
        return 0, len(placed)
    return sum(1 for w in placed if w["sync"] == "Synced"), len(placed)
