"""Simulated Kubernetes clusters with GPU nodes: our own API server, for demo, tests, bench.

No real kube-apiserver can run on these machines, and the Python fakes fall short, so
the product ships its own (see `docs/simulator.md` for what it reproduces and what it
does not):

    nodes.py       SimNode / SimClusterSpec, spec_from_cluster, v1 Node objects
    resources.py   the served resource types and discovery documents
    store.py       objects, resourceVersion, watch history, garbage collection
    objects.py     validation, defaults and immutable fields, as the server applies them
    api.py         REST routing and verbs; listing.py pages; watch.py streams
    patch.py       JSON, merge and strategic merge patches; ssa.py server-side apply
    controllers.py scheduler, kubelet, Deployment controller; jobs.py the Job controller
    faults.py      fault injection; server.py the HTTP side, SimCluster, start_sim
    tls.py         the throwaway CA and server certificate (kubectl sends tokens over TLS)
    protobuf.py    protobuf request bodies, for what kubectl's generators send
    kubectl.py     OpenAPI, Table and pods/log for kubectl

    async with await start_sim([spec_from_cluster(c) for c in clusters]) as sim:
        sim.write_kubeconfig(path)          # one context per cluster, token auth
        sim.clusters["eu-fra-1"].faults.fail_next(2, 503)
"""

from clusters.sim.faults import Faults
from clusters.sim.nodes import SimClusterSpec, SimNode, spec_from_cluster
from clusters.sim.server import SimCluster, SimFleet, start_sim

__all__ = ["Faults", "SimCluster", "SimClusterSpec", "SimFleet", "SimNode",
           "spec_from_cluster", "start_sim"]
