"""The runtime: reconcile loops, the manager, the HTTP server and the `fleet` CLI.

Wires `workloads` (Git side) and `clusters` (Kubernetes side) around the `fleet` core.
"""
