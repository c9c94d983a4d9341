"""`fleet run --shards N`: a replica that lets a shard go keeps nothing of its clusters'
connections (issue 22: a replica's memory followed every cluster it had ever held).

Replica "a" starts alone and holds both shards of six simulated clusters; "b" starts
and asks for one, which "a" lets go. Once "a" has disconnected that shard's clusters,
their adapters, informers, appliers and clients must be garbage: a weak reference to
each is dead after `gc.collect()` -- whatever held one (the placement loop's watch, the
cluster set, the WhereRuns index) would keep it, and its caches, alive. When "b" stops,
"a" takes the shard back and connects and reconciles its clusters as before.
"""

from __future__ import annotations

import gc
import weakref
from contextlib import AsyncExitStack
from pathlib import Path

from clusters.adapter import ClusterAdapter
from controllers.demo.sandbox import until
from controllers.runtime.manager import Manager
from fleet.render.keys import workload_label
from fleet.shards import shard_of
from tests.integration.test_controller_shards_scope import (
    LEASE,
    SHARDS,
    SIX,
    held,
    images,
    own,
    roll,
    six,
    start,
)


def parts(adapter: ClusterAdapter) -> dict[str, object]:
    """The adapter and what holds a cluster's caches and connection."""
    out: dict[str, object] = {"adapter": adapter, "applier": adapter.applier,
                              "client": adapter.client}
    for i, inf in enumerate(adapter._all_informers()):
        out[f"informer {i} {inf.rtype.kind}"] = inf
    return out


def holders(m: Manager, on: str) -> list[str]:
    """The clusters `m`'s WhereRuns index says hold the workload pinned to `on`."""
    return [x.name for x in m.where_runs.holders(workload_label(f"web-team/on-{on}"))]


async def test_a_shard_let_go_leaves_no_adapter_nor_informer_behind(tmp_path: Path) -> None:
    async with six(tmp_path) as box, AsyncExitStack() as stack:
        a = await start(box, stack, tmp_path, "a")
        await until(lambda: held(a) == [0, 1], 60, what="a holds both shards")
        await until(lambda: set(a.adapters) == set(SIX) and all(
            x.synced.is_set() for x in a.adapters.values()), 60,
            what="a connected and listed every cluster")
        # Seen by the placement loop's watch (its capacity/health fold), and each
        # workload applied, so that every adapter is in the WhereRuns index too.
        await until(lambda: all(holders(a, n) == [n] for n in SIX), 30,
                    what="a runs each workload on its cluster")
        refs = {(name, part): weakref.ref(obj)
                for name, adapter in a.adapters.items()
                for part, obj in parts(adapter).items()}
        assert len(refs) > len(SIX) * 10  # every informer of every cluster is tracked
        b_stack = await stack.enter_async_context(AsyncExitStack())
        b = await start(box, b_stack, tmp_path, "b")
        await until(lambda: len(held(a)) == len(held(b)) == 1, 60, what="one shard each")
        gone = sorted(n for n in SIX if shard_of(n, SHARDS) == held(b)[0])
        assert gone and set(gone) == own(b)
        await until(lambda: set(a.adapters) == own(a), 30,
                    what="a disconnected the shard it let go")
        await until(lambda: set(b.adapters) == own(b), 30, what="b connected its shard")
        gc.collect()
        alive = sorted(f"{name}: {part}" for (name, part), ref in refs.items()
                       if name in gone and ref() is not None)
        assert alive == []
        # What a still holds is kept, as it was (the check above could not pass by
        # dropping everything).
        kept = [ref() for (name, part), ref in refs.items() if name in own(a)]
        assert kept and all(x is not None for x in kept)
        assert all(a.adapters[n] is refs[(n, "adapter")]() for n in own(a))
        # The WhereRuns index names a's own clusters only.
        assert all(holders(a, n) == ([n] if n in own(a) else []) for n in SIX)
        # b stops; a takes the shard back when its Lease lapses and connects afresh:
        # new adapters, seen by the placement watch as new, and reconciled.
        await b_stack.aclose()
        await until(lambda: held(a) == [0, 1], 3 * LEASE + 5, what="a takes the shard back")
        await until(lambda: set(a.adapters) == set(SIX), 20, what="a reconnects its clusters")
        assert all(refs[(n, "adapter")]() is None for n in gone)  # not the old ones
        await until(lambda: all(holders(a, n) == [n] for n in SIX), 30,
                    what="the new adapters in the WhereRuns index")
        await roll(box, "registry.internal/serve:v2", a)
        await until(lambda: all(images(box).get(n) == "registry.internal/serve:v2"
                                for n in gone), 30, what="the clusters taken back reconciled")
