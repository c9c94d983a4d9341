"""The live-state side: Kubernetes clusters through kubernetes-asyncio.

Capacity discovery, server-side apply, prune, drift and health per cluster; the
simulated clusters the demo and tests run on live in `clusters/sim/`. Imports `fleet`
(the core) only; never `workloads` or `controllers`.
"""
