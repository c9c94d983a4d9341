"""Following the members' credentials Secrets while the controller runs.

A Manager-owned part, with `--cluster-secrets`. Every `every` seconds it lists the
labelled credentials Secrets in the controller's namespace on the management cluster
(one LIST with a label selector, as `fleet cluster list` reads them) and compares each
with the resourceVersion its cluster was last read from (`ClusterSet.versions`):

- **changed** (a rotated token, a new CA): when the kubeconfig it makes differs from
  the one in use, that cluster alone is reconnected (`ClusterSet.reconnect`: its old
  client closed, the Secret read again, the identity check made again); a write that
  changed nothing the connection uses (a label, an annotation) only moves the version;
- **gone** (deleted, or no longer labelled) or **unusable**: the connected cluster is
  cut off (`ClusterSet.cut`): Unreachable with that reason, its client closed, never
  drained -- what `docs/safety.md` says of an Unreachable cluster holds;
- **made or changed** for a cluster that is not connected (never was, or cut off):
  it is connected at once, without waiting for the next poll.

A LIST that fails changes nothing: a management cluster that cannot be asked is not a
deleted Secret. Nothing here logs or shows a Secret's data; errors name the Secret and
the key (`clusters.credentials`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import structlog

from clusters.client import JSON, KubeClient
from clusters.credentials import kubeconfig_of_secret, list_credentials, version_of
from clusters.errors import ClusterError, KubeconfigError
from clusters.kubeconfig import ConnectionSpec
from controllers.runtime.clusterset import ClusterSet
from fleet.models import Cluster
from fleet.spec import FleetSpec

log = structlog.get_logger()

DELETED = "CredentialsDeleted"
UNUSABLE = "CredentialsUnusable"


class CredentialsWatch:
    def __init__(self, clusters: ClusterSet, *,
                 home_client: Callable[[], Awaitable[KubeClient | None]],
                 spec: Callable[[], FleetSpec | None],
                 connection_of: Callable[[Cluster], ConnectionSpec],
                 resync: Callable[[], Awaitable[None]], every: float) -> None:
        self.clusters = clusters
        self.home_client = home_client
        self.spec = spec
        self.connection_of = connection_of
        self.resync = resync
        """Connect what is not connected (`SourceLoop.retry_connections`)."""
        self.every = every
        self.checks = 0
        """Lists made (answered or not): tests count them instead of waiting."""

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.every)
            await self.check_once()

    async def check_once(self) -> None:
        self.checks += 1
        spec = self.spec()
        watched = self._watched(spec)
        if not watched:
            return
        found = await self._list()
        if found is None:
            return
        connect = False
        for name, secret_name in sorted(watched.items()):
            connect |= await self._follow(name, found.get(secret_name))
        if connect:
            await self.resync()

    def _watched(self, spec: FleetSpec | None) -> dict[str, str]:
        """Cluster -> its credentials Secret's name, for the Secret-reached clusters the
        repo names (a retiring cluster keeps the connection it has)."""
        if spec is None:
            return {}
        out: dict[str, str] = {}
        for name, cluster in sorted(spec.clusters.items()):
            conn = self.connection_of(cluster)
            if conn.secret:
                out[str(name)] = conn.secret
        return out

    async def _list(self) -> dict[str, JSON] | None:
        client = await self.home_client()
        if client is None:
            return None
        try:
            items = await list_credentials(client, self.clusters.namespace)
        except (ClusterError, TimeoutError) as e:
            why = (e.reason or type(e).__name__) if isinstance(e, ClusterError) \
                else "no answer"
            log.warning("credentials_list_failed", namespace=self.clusters.namespace,
                        error=why)
            return None
        return {str((s.get("metadata") or {}).get("name", "")): s for s in items}

    async def _follow(self, name: str, secret: JSON | None) -> bool:
        """Act on one cluster's Secret; True when a connection should be made now."""
        cs = self.clusters
        where = f"{cs.namespace}/{name}"
        live = name in cs.adapters and name not in cs.cut_off
        if secret is None:
            if live:
                message = (f"credentials Secret {where} was deleted (or lost its label "
                           f"aifleet.dev/cluster-credentials): not reached until it is "
                           f"back (`fleet cluster add {name}`); nothing is deleted")
                log.warning("cluster_credentials_deleted", cluster=name, secret=where)
                await cs.cut(name, DELETED, message)
            return False
        version = version_of(secret)
        if version == cs.versions.get(name):
            return False
        if not live:
            log.info("cluster_credentials_found", cluster=name, secret=where,
                     resource_version=version)
            if name in cs.cut_off:
                await cs.reconnect(name)
            return True
        try:
            doc = kubeconfig_of_secret(secret, name)
        except KubeconfigError as e:
            # Its old credentials were replaced: they are not used on.
            log.warning("cluster_credentials_unusable", cluster=name, error=str(e))
            await cs.cut(name, UNUSABLE, f"{e} (the credentials it replaced are not "
                                         "used on); nothing is deleted")
            cs.versions[name] = version
            return False
        if doc == cs.inline.get(name):
            cs.versions[name] = version  # nothing the connection uses changed
            return False
        log.info("cluster_credentials_changed", cluster=name, secret=where,
                 resource_version=version)
        await cs.reconnect(name)
        return True
