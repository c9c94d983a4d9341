"""Benchmark: the bytes a first build of the status document needs (issue 22: each
replica <= 1 GiB at 1,000 clusters x 50,000 workloads).

The replica that serves `/api/v1/status` builds the document (`controllers.status.cache.
StatusCache`): at a cold start every row is built. Under `bench.scale` that is replica
0, the leader (the benchmark reads the status there), and it was most of the leader's
extra peak RSS (docs/controller.md "Where the leader's extra peak went"). Here, in this
process and with no clusters: a `Manager` with `bench.placement.synthetic_spec` and its
plan, then the cache's build as its refresher runs it (`_steps`, then `_raw`), with
tracemalloc: the peak of the rows' step, the peak of the document's encoding and
publication (the `Body`, gzip and digest, made from its parts, and the frame the front
process is sent), and what is held after it, each above what was held before the build.

    python -m bench.statusmem --clusters 1000 --workloads 50000
    python -m bench.statusmem --smoke                       # 4 x 40 (CI)
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import tracemalloc
from pathlib import Path

from bench.placement import synthetic_spec
from controllers.frontproc import Kind, frame, status_payload
from controllers.runtime.manager import Manager
from controllers.settings import Settings
from controllers.status.bodies import Body
from controllers.status.cache import StatusCache, _assemble_parts
from fleet.capacity import declared_capacity
from fleet.placement import place

MIB = 2**20
COMMIT = "c0" * 20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument("--workloads", type=int, default=5000)
    p.add_argument("--smoke", action="store_true", help="4 clusters x 40 workloads")
    args = p.parse_args(argv)
    if args.smoke:
        args.clusters, args.workloads = 4, 40
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        m = Manager(Settings(repo=tmp, state_dir=Path(tmp)))
        spec = synthetic_spec(args.clusters, args.workloads)
        m.desired.adopt_spec(spec, COMMIT, None)
        m.desired.set_plan(place(spec, declared_capacity(spec.clusters), {}, commit=COMMIT),
                           None)
        cache = StatusCache(m)
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        doc, rows, built = cache.steps_at_once()
        rows_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        # Then encoded and published as the refresher does (`StatusCache._build`): the
        # body gzipped and digested from the document's parts (`Body.made_of`), and
        # the frame the front process is sent (`controllers.frontproc`).
        parts = _assemble_parts(doc, rows)
        size = sum(len(p) for p in parts)
        body = Body.made_of(parts)
        del parts
        sent = len(frame(Kind.STATUS, status_payload(body)))
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print(f"{args.clusters} clusters x {args.workloads} workloads: {built} rows built; "
          f"peak of the rows' step {(rows_peak - base) / MIB:.1f} MiB, of the encoding "
          f"and publication {(peak - base) / MIB:.1f} MiB; held after "
          f"{(held - base) / MIB:.1f} MiB (a document of {size / MIB:.1f} MiB, held "
          f"gzipped: {len(body.gz) / MIB:.1f} MiB, identity bytes kept: "
          f"{body.kept is not None}; the rows kept for the next build; the front sent a "
          f"{sent / MIB:.1f} MiB frame)")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
