"""The render contract: what the controller writes to a cluster, and how it reads it back.

One home for every idea an owned object carries, so that what the controller applies,
what a restarted controller reads back, what the PR diff shows, what `fleet render`
prints and what the audit counts agree by construction:

- `keys`: the label and annotation keys, the workload label <-> id rule, the kind order;
- `forward`: `render` (one workload in one cluster), `namespace`, `cluster_objects`
  (what the controller applies to a cluster), `render_cluster` (the same for one commit),
  `to_yaml`, `intent_hash`;
- `inverse`: `read_back` (workload, replicas, product, GPUs, commit, intent hash of a
  live object) and the one rule for the GPUs of a pod;
- `admission`: what a real API server would refuse of a workload's objects, said at
  the workload's fields (`fleet validate`), and which changes a running Job cannot take
  in place (a re-create is needed).

Pure: no I/O.
"""

from __future__ import annotations

from fleet.render.forward import (
    BACKOFF_LIMIT,
    Manifest,
    RenderFn,
    cluster_objects,
    for_existing,
    intent_hash,
    namespace,
    placed_by_cluster,
    placed_on,
    render,
    render_cluster,
    sort_key,
    to_yaml,
)
from fleet.render.inverse import ReadBack, pod_gpus, pod_spec_gpus, read_back, workload_of
from fleet.render.keys import (
    CONTENT_HASH,
    FLAVOUR,
    GPU_RESOURCE,
    INTENT_HASH,
    KIND_ORDER,
    LEASE_GENERATION,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    OWNED_SELECTOR,
    PRODUCT_LABEL,
    RECREATE,
    SOURCE_COMMIT,
    WORKLOAD_KINDS,
    WORKLOAD_LABEL,
    workload_id_of_label,
    workload_label,
)

__all__ = [
    "BACKOFF_LIMIT", "CONTENT_HASH", "FLAVOUR", "GPU_RESOURCE", "INTENT_HASH", "KIND_ORDER",
    "LEASE_GENERATION", "MANAGED_BY", "MANAGED_BY_VALUE", "OWNED_SELECTOR", "PRODUCT_LABEL",
    "RECREATE", "SOURCE_COMMIT", "WORKLOAD_KINDS", "WORKLOAD_LABEL", "Manifest",
    "ReadBack", "RenderFn", "cluster_objects", "for_existing", "intent_hash", "namespace",
    "placed_by_cluster",
    "placed_on",
    "pod_gpus", "pod_spec_gpus", "read_back", "render", "render_cluster", "sort_key",
    "to_yaml", "workload_id_of_label", "workload_label", "workload_of",
]
