"""Benchmark: the bytes a parsed fleet spec holds, and what the placement worker gets
(issue 22: each replica <= 1 GiB at 1,000 clusters x 50,000 workloads).

Builds the synthetic fleet `bench.e2e.fleet_files` makes (the one `bench.scale` and
`bench.e2e` commit), reads it as the controller does (`workloads.loader.load_entries`
through a `ParseCache`, in this process) and reports, with tracemalloc:

1. the bytes held by the spec and the parse cache behind it, per workload;
2. where they go: by type, and by model field (each object counted once, under the
   first field that reaches it, so an object shared by many workloads counts once);
3. what the placement worker receives on its first call (`controllers.runtime.
   placerproc.Delta` less the capacity): its pickle, and the bytes it holds once
   unpickled.

    python -m bench.specmem                                 # 100 clusters x 5,000
    python -m bench.specmem --clusters 1000 --workloads 50000
    python -m bench.specmem --varied     # each workload its own image, labels, toleration
    python -m bench.specmem --smoke                         # 4 x 40 (CI)

tracemalloc slows the parse several times over; the figures are bytes, not seconds.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel

from bench.e2e import fleet_files
from controllers.runtime.placerproc import delta
from fleet.capacity import declared_capacity
from fleet.spec import FleetSpec, placement_view
from workloads.loader import ParseCache, load_entries
from workloads.source import FileEntry

MIB = 2**20


def entries(files: dict[str, str | bytes]) -> list[FileEntry]:
    out: list[FileEntry] = []
    for path, text in sorted(files.items()):
        data = text.encode() if isinstance(text, str) else text
        out.append(FileEntry(path, path, len(data), f"k{len(out)}", _reader(data)))
    return out


def varied(files: dict[str, str | bytes]) -> dict[str, str | bytes]:
    """The fleet with less alike workloads: each its own image tag and `app` label, an
    `owner` label of 97 and a toleration of 50 (what sharing cannot merge stays apart)."""
    out = dict(files)
    for path, text in files.items():
        if not path.startswith("workloads/") or not isinstance(text, str):
            continue
        i = int(path.rsplit("/w", 1)[1].removesuffix(".yaml"))
        out[path] = text.replace("app:0", f"app:v{i}").replace(
            "namespace: team", f"labels: {{app: w{i:05d}, owner: o{i % 97}}}, namespace: team"
        ).replace("placement: {", f"placement: {{tolerations: [{{key: k{i % 50}, "
                                  "operator: Exists}], ")
    return out


def _reader(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def held(build: Callable[[], Any]) -> tuple[Any, int, tracemalloc.Snapshot]:
    """What `build` returns, the traced bytes still allocated after it (a full
    collection first), and the snapshot of them."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        snap = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    return out, after - before, snap


def walk(root: Any, label: str) -> Iterator[tuple[str, Any]]:
    """(field path, object) for every object reachable from `root` through models,
    dataclasses, mappings and sequences, each object once."""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [(label, root)]
    while stack:
        path, obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield path, obj
        if isinstance(obj, BaseModel):
            name = type(obj).__name__
            stack.append((f"{name} __dict__", obj.__dict__))
            stack.append((f"{name} fields_set", obj.__pydantic_fields_set__))
            for k, v in obj.__dict__.items():
                stack.append((f"{name}.{k}", v))
        elif hasattr(obj, "__slots__") and hasattr(type(obj), "__dataclass_fields__"):
            name = type(obj).__name__
            for k in type(obj).__dataclass_fields__:
                stack.append((f"{name}.{k}", getattr(obj, k)))
        elif isinstance(obj, dict):
            for k, v in obj.items():
                stack.append((f"{path}[key]", k))
                stack.append((f"{path}[]", v))
        elif isinstance(obj, tuple | list | set | frozenset):
            for v in obj:
                stack.append((f"{path}[]", v))
        elif hasattr(obj, "__reduce__") and type(obj).__module__.startswith("fleet."):
            for v in getattr(obj, "__dict__", {}).values():
                stack.append((f"{path}.*", v))


def breakdown(root: Any, label: str, top: int) -> None:
    by_type: Counter[str] = Counter()
    by_field: Counter[str] = Counter()
    for path, obj in walk(root, label):
        size = sys.getsizeof(obj)
        by_type[type(obj).__name__] += size
        by_field[path] += size
    total = sum(by_type.values())
    print(f"  reachable, each object once (sys.getsizeof): {total / MIB:.1f} MiB")
    print("  by type:")
    for name, size in by_type.most_common(top):
        print(f"    {size / MIB:8.2f} MiB {100 * size / total:5.1f}%  {name}")
    print("  by field (objects first reached through it):")
    for name, size in by_field.most_common(top):
        print(f"    {size / MIB:8.2f} MiB {100 * size / total:5.1f}%  {name}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument("--workloads", type=int, default=5000)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--varied", action="store_true",
                   help="each workload its own image and labels (see `varied`)")
    p.add_argument("--smoke", action="store_true", help="4 clusters x 40 workloads")
    args = p.parse_args(argv)
    if args.smoke:
        args.clusters, args.workloads, args.top = 4, 40, 5
    print(f"load average before: {os.getloadavg()}")
    fleet = fleet_files(args.clusters, args.workloads, 1)
    files = entries(varied(fleet) if args.varied else fleet)
    started = time.perf_counter()
    cache = ParseCache()
    spec, spec_bytes, snap = held(lambda: load_entries(files, cache))
    assert isinstance(spec, FleetSpec)
    n = max(1, len(spec.workloads))
    print(f"{args.clusters} clusters x {args.workloads} workloads"
          f"{' (varied)' if args.varied else ''} "
          f"({len(spec.workloads)} valid, {len(spec.errors)} errors), read in "
          f"{time.perf_counter() - started:.1f} s under tracemalloc")
    print(f"spec + parse cache held: {spec_bytes / MIB:.1f} MiB "
          f"({spec_bytes / n:,.0f} B per workload)")
    print("  top allocation sites:")
    for s in snap.statistics("lineno")[:args.top]:
        print(f"    {s.size / MIB:8.2f} MiB {s.count:9d} blocks  {s.traceback}")
    breakdown(spec, "FleetSpec", args.top)

    view = placement_view(spec)
    d = delta(None, 1, view, declared_capacity(spec.clusters))
    sent = pickle.dumps((d.order, d.workloads, d.other), pickle.HIGHEST_PROTOCOL)
    got, got_bytes, _ = held(lambda: pickle.loads(sent))
    print(f"placement worker's first call (spec part): pickle {len(sent) / MIB:.1f} MiB, "
          f"held unpickled {got_bytes / MIB:.1f} MiB ({got_bytes / n:,.0f} B per workload)")
    del got
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
