"""The home cluster: where the leader Lease and the state shared by replicas live.

Shared state is the last plan's placements (`controllers.persist.sharedplan`) and the source
guard (`controllers.runtime.sourceguard`: the last applied commit and a refused force-push).
The home is, in order:

- a management cluster, separate from the members: the one the controller runs in,
  through its ServiceAccount (`--home-in-cluster`, what the Helm chart sets), or one
  named by `--home-kubeconfig` and/or `--home-context`: losing a member then never
  stops election, so the other members keep being reconciled;
- a member cluster, only when named explicitly (`--leader-cluster`): losing it stops
  every replica from leading, which the operator chose knowingly;
- none: no shared state. `--leader-elect` refuses to start without a home
  (`controllers.settings.home_problem`), rather than silently pick a member.

Everything the controller keeps there is in its own namespace (`clusters.namespace`:
`--namespace`, else the pod's own with `--home-in-cluster`, else `aifleet-system`).

The management cluster gets a bare API client (no informers: the controller places
nothing there); connecting is retried, and a failure is a status condition, never a
crash.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import anyio
import structlog

from clusters.adapter import AdapterOptions, ClusterAdapter
from clusters.client import KubeClient
from clusters.errors import ClusterError
from clusters.kubeconfig import ConnectionSpec, api_client, in_cluster_client
from clusters.namespace import resolve as resolve_namespace

log = structlog.get_logger()

MANAGEMENT = "home"
"""The management cluster's name in logs and errors (it is not a fleet member)."""


class HomeSettings(Protocol):
    """What the home needs of the controller's settings (`controllers.settings.Settings`)."""

    @property
    def kubeconfig(self) -> str | None: ...
    @property
    def home_kubeconfig(self) -> str | None: ...
    @property
    def home_context(self) -> str | None: ...
    @property
    def leader_cluster(self) -> str | None: ...
    @property
    def home_in_cluster(self) -> bool: ...
    @property
    def serviceaccount_dir(self) -> Path: ...
    @property
    def namespace(self) -> str | None: ...


class Home:
    def __init__(self, settings: HomeSettings, adapters: Mapping[str, ClusterAdapter],
                 options: AdapterOptions, *, retry_every: float = 2.0) -> None:
        self.settings = settings
        self.adapters = adapters
        self.options = options
        self.retry_every = retry_every
        self.namespace = resolve_namespace(settings.namespace,
                                           home_in_cluster=settings.home_in_cluster,
                                           serviceaccount_dir=settings.serviceaccount_dir)
        """The controller's namespace in the home: its Lease, state ConfigMaps and the
        members' credentials Secrets. No team folder may use it: the controller reads
        the repo with it reserved (`workloads.loader.load_entries`)."""
        self.management: KubeClient | None = None
        self.error = ""
        """Why the management cluster cannot be reached now, or ""."""
        self.connected = asyncio.Event()
        """Set once the management cluster's client is made."""

    @property
    def configured(self) -> bool:
        s = self.settings
        return bool(s.home_in_cluster or s.home_kubeconfig or s.home_context
                    or s.leader_cluster)

    @property
    def is_management(self) -> bool:
        s = self.settings
        return bool(s.home_in_cluster or s.home_kubeconfig or s.home_context)

    @property
    def name(self) -> str | None:
        if self.is_management:
            return MANAGEMENT
        return self.settings.leader_cluster

    def client(self) -> KubeClient | None:
        """The home's API client while it can be used, else None."""
        if self.is_management:
            return self.management
        name = self.settings.leader_cluster
        a = self.adapters.get(name) if name else None
        return a.client if a is not None and a.health_state != "Unreachable" else None

    async def connect(self) -> None:
        """Connect to the management cluster (if that is the home), retrying until it
        works; each failure is logged and kept in `error` for the status."""
        if not self.is_management:
            return
        conn = ConnectionSpec(MANAGEMENT, self.settings.home_kubeconfig or
                              self.settings.kubeconfig, self.settings.home_context)
        while self.management is None:
            try:
                api = await (in_cluster_client(self.settings.serviceaccount_dir, MANAGEMENT)
                             if self.settings.home_in_cluster else
                             api_client(conn, allow_exec=self.options.allow_exec))
            except (ClusterError, ssl.SSLError, OSError, ValueError) as e:
                why = str(e) if isinstance(e, ClusterError) else type(e).__name__
                if why != self.error:
                    log.error("home_connect_failed", error=why)
                self.error = why
                await anyio.sleep(self.retry_every)
                continue
            self.management = KubeClient(MANAGEMENT, api, qps=self.options.qps,
                                         burst=self.options.burst, retry=self.options.retry)
            self.error = ""
            self.connected.set()
            log.info("home_connected", context="in-cluster" if self.settings.home_in_cluster
                     else conn.context, namespace=self.namespace)

    async def aclose(self) -> None:
        if self.management is not None:
            await self.management.close()
            self.management = None
