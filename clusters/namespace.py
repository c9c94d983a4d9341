"""The controller's own namespace in the home cluster (`clusters.home`).

Its leader Lease (`clusters.leader`), its state ConfigMaps (`clusters.configmap`) and the
members' credentials Secrets (`clusters.credentials`) live there. Which namespace that
is, in order:

1. `--namespace` / `FLEET_NAMESPACE`, when given;
2. running in the cluster (`--home-in-cluster`, what the Helm chart sets): the pod's
   own namespace, the `namespace` file the kubelet mounts beside the ServiceAccount
   token (client-go's in-cluster config reads the same file:
   k8s.io/client-go/tools/clientcmd/client_config.go, `inClusterClientConfig.Namespace`);
3. `aifleet-system`.

So `helm install -n other` needs nothing more: the pods run in `other`, and so does
everything the controller keeps.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT = "aifleet-system"
FILE = "namespace"
"""The file of the ServiceAccount mount that holds the pod's namespace."""


def in_cluster(serviceaccount_dir: Path) -> str | None:
    """The pod's namespace from the ServiceAccount mount, or None when it has none."""
    try:
        text = (serviceaccount_dir / FILE).read_text().strip()
    except OSError:
        return None
    return text or None


def resolve(explicit: str | None, *, home_in_cluster: bool,
            serviceaccount_dir: Path) -> str:
    """The controller's namespace (see the module's docstring for the order)."""
    if explicit:
        return explicit
    if home_in_cluster:
        found = in_cluster(serviceaccount_dir)
        if found:
            return found
    return DEFAULT
