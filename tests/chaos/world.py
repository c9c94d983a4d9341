"""The chaos test's world: a bare Git remote, simulated clusters over HTTP, and the
controller, either in-process (`Manager`, as the integration tests run it) or as a
`fleet run` subprocess (so it can be SIGKILLed). Both are observed the same way, over
HTTP: `/healthz`, `/api/v1/status`; the clusters through their own API.
"""

from __future__ import annotations

import json
import signal
import ssl
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pygit2

from clusters.sim import SimClusterSpec, SimFleet, spec_from_cluster, start_sim, tls
from controllers.runtime.manager import Manager
from controllers.settings import Settings
from fleet.render import WORKLOAD_LABEL, workload_id_of_label
from tests.support.controller import FAST
from workloads.loader import read_fleet

SIGNATURE = pygit2.Signature("chaos", "chaos@aifleet.dev")
REPO_ROOT = Path(__file__).resolve().parents[2]
IDENTITY = "chaos-controller"
"""One identity for every controller of a run: a restarted leader takes its Lease back at
once instead of waiting for it to expire."""

Live = dict[str, dict[str, set[str]]]
"""cluster -> workload id -> kinds of its live objects (Job, Deployment)."""


class Remote:
    """The bare fleet repo the controller fetches; every commit is a whole tree."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.repo = pygit2.init_repository(str(path), bare=True, initial_head="main")

    def commit(self, files: Mapping[str, bytes], message: str) -> str:
        index = pygit2.Index()
        for rel, data in sorted(files.items()):
            index.add(pygit2.IndexEntry(rel, self.repo.create_blob(data),
                                        pygit2.enums.FileMode.BLOB))
        tree = index.write_tree(self.repo)
        ref = self.repo.references.get("refs/heads/main")
        parents = [ref.target] if ref is not None else []
        return str(self.repo.create_commit("refs/heads/main", SIGNATURE, SIGNATURE, message,
                                           tree, parents))

    def force_to(self, sha: str) -> None:
        self.repo.references["refs/heads/main"].set_target(sha)

    def descends(self, new: str, old: str) -> bool:
        return new == old or bool(self.repo.descendant_of(new, old))


def _ca_context() -> ssl.SSLContext:
    return ssl.create_default_context(cadata=tls.make_tls().ca_pem.decode())


class Clusters:
    """The simulated clusters, read over HTTP with their bearer tokens."""

    def __init__(self, sim: SimFleet) -> None:
        self.sim = sim
        self.http = httpx.AsyncClient(verify=_ca_context(), timeout=5.0)
        self.seen: Live = {name: {} for name in sim.clusters}
        """The last reading of each cluster: what a down cluster still runs."""

    def is_down(self, name: str) -> bool:
        return self.sim.clusters[name].is_down

    async def _read(self, name: str) -> dict[str, set[str]]:
        c = self.sim.clusters[name]
        out: dict[str, set[str]] = {}
        for kind, path in (("Job", "/apis/batch/v1/jobs"),
                           ("Deployment", "/apis/apps/v1/deployments")):
            r = await self.http.get(f"{c.url}{path}", params={"labelSelector": WORKLOAD_LABEL},
                                    headers={"Authorization": f"Bearer {c.token}"})
            r.raise_for_status()
            for obj in r.json()["items"]:
                meta = obj["metadata"]
                if meta.get("deletionTimestamp"):
                    continue  # going away: not a live copy
                wid = workload_id_of_label(meta["labels"][WORKLOAD_LABEL])
                out.setdefault(wid, set()).add(kind)
        return out

    async def live(self) -> Live:
        """Every cluster's workloads: read now if it is up, else its last reading."""
        for name in sorted(self.sim.clusters):
            if not self.is_down(name):
                self.seen[name] = await self._read(name)
        return {n: {w: set(k) for w, k in v.items()} for n, v in self.seen.items()}

    async def aclose(self) -> None:
        await self.http.aclose()


async def start_clusters(remote: Remote, first: str, kubeconfig: Path) -> Clusters:
    spec = read_fleet(remote.path, first).spec
    sim = await start_sim([spec_from_cluster(c) for _, c in sorted(spec.clusters.items())],
                          job_seconds=3600.0, pod_start_seconds=0.05)
    sim.write_kubeconfig(kubeconfig)
    return Clusters(sim)


def home_kubeconfig(root: Path) -> Path:
    return root / "home.kubeconfig"


async def start_home(root: Path) -> SimFleet:
    """The management cluster (no GPU nodes, context `home`) holding the Lease."""
    home = await start_sim([SimClusterSpec("home", ())])
    home.write_kubeconfig(home_kubeconfig(root))
    return home


def settings_values(root: Path, remote: Remote, kubeconfig: Path, *,
                    leader_elect: bool) -> dict[str, Any]:
    values: dict[str, Any] = {
        "repo": str(remote.path), "state_dir": root / "state", "kubeconfig": str(kubeconfig),
        "listen": "127.0.0.1:0", "poll_interval": 0.3, "resync_interval": 30.0,
        "unreachable_after": 1.0, "failover_grace": 1.0}
    if leader_elect:
        # The Lease and shared state in a management cluster of their own, as
        # `--leader-elect` wants them: the chaos takes members down and retires them; it
        # never touches the home (a member as home is a single point of failure by
        # choice; docs/safety.md says what that costs).
        values.update(leader_elect=True, identity=IDENTITY,
                      home_kubeconfig=str(home_kubeconfig(root)), home_context="home")
    return values


class Controller:
    """One running controller; `kind` is "in-process" or "subprocess"."""

    kind = ""

    def __init__(self) -> None:
        self.port: int | None = None
        self.http = httpx.AsyncClient(timeout=5.0)

    def died(self) -> str | None:
        """Why the controller is gone, if it is (it did not stop because we asked)."""
        raise NotImplementedError

    def trigger(self) -> None:
        """Fetch now (the subprocess polls every 0.3 s)."""

    async def healthz(self) -> int | str:
        if self.port is None:
            return "no port"
        try:
            r = await self.http.get(f"http://127.0.0.1:{self.port}/healthz")
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}"
        return r.status_code

    async def status(self) -> dict[str, Any] | None:
        if self.port is None:
            return None
        try:
            r = await self.http.get(f"http://127.0.0.1:{self.port}/api/v1/status")
            if r.status_code != 200:
                return None
            doc: dict[str, Any] = r.json()
            return doc
        except (httpx.HTTPError, ValueError):
            return None

    async def stop(self) -> None:
        raise NotImplementedError

    async def kill(self) -> None:
        await self.stop()


class InProcess(Controller):
    kind = "in-process"

    def __init__(self, tg: anyio.abc.TaskGroup, settings: Settings) -> None:
        super().__init__()
        self.tg = tg
        self.manager = Manager(settings, adapter_options=FAST, lease_duration=2.0)
        self.scope = anyio.CancelScope()
        self.crash: BaseException | None = None
        self.finished = anyio.Event()

    async def start(self) -> None:
        await self.tg.start(self._run)
        self.port = self.manager.port

    async def _run(self, *, task_status: anyio.abc.TaskStatus[Manager]) -> None:
        try:
            with self.scope:
                try:
                    await self.manager.run(task_status=task_status)
                except Exception as e:  # the manager died: invariant 1 reports it
                    self.crash = e
        finally:
            self.finished.set()

    def died(self) -> str | None:
        if self.crash is not None:
            where = "".join(traceback.format_exception(self.crash)[-12:])
            return f"Manager.run raised {self.crash!r}\n{where[-2500:]}"
        if self.finished.is_set() and not self.scope.cancel_called:
            return "Manager.run returned"
        return None

    def trigger(self) -> None:
        self.manager.trigger_fetch()

    async def stop(self) -> None:
        self.scope.cancel()
        with anyio.fail_after(20):
            await self.finished.wait()
        if not self.http.is_closed:
            await self.http.aclose()


class Subprocess(Controller):
    kind = "subprocess"

    def __init__(self, values: dict[str, Any], log: Path) -> None:
        super().__init__()
        self.args = [sys.executable, "-m", "controllers.cli", "run", "--log-json", "true"]
        for name, value in values.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                self.args.append(flag)
            else:
                self.args += [flag, str(value)]
        self.log = log
        self.proc: anyio.abc.Process | None = None
        self.stopping = False

    async def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = await anyio.open_process(self.args, stdout=out, stderr=out,
                                                 cwd=REPO_ROOT)
        with anyio.fail_after(60):
            while self.port is None:
                if self.proc.returncode is not None:
                    return
                await anyio.sleep(0.1)
                with self.log.open("rb") as f:
                    f.seek(offset)
                    for line in f.read().splitlines():
                        if b'"http_listening"' in line:
                            self.port = int(json.loads(line)["port"])

    def died(self) -> str | None:
        if self.proc is None or self.proc.returncode is None or self.stopping:
            return None
        tail = self.log.read_bytes()[-3000:].decode(errors="replace")
        return f"`fleet run` exited with {self.proc.returncode}; log tail:\n{tail}"

    async def _end(self, sig: signal.Signals) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            with anyio.fail_after(20):
                await self.proc.wait()
        if not self.http.is_closed:
            await self.http.aclose()

    async def stop(self) -> None:
        await self._end(signal.SIGTERM)

    async def kill(self) -> None:
        await self._end(signal.SIGKILL)
