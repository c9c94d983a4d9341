"""`fleet run` with tracemalloc on: where the controller's bytes are (issue 22, item 1).

    python -m bench.heapdump OUT.snap [-m controllers.cli] run --repo ...   # as `fleet`

Starts tracemalloc (`BENCH_TRACEMALLOC_FRAMES` frames per trace, default 1) before the
controller imports anything heavy, and writes a snapshot to OUT.snap each time the
process gets SIGUSR2 (`bench.e2e` and `bench.scale` send it before they stop the
controller when `BENCH_TRACEMALLOC=OUT.snap` is set; with replicas, one file per
replica, and `BENCH_TRACEMALLOC_ONLY=replica-0[,replica-1]` traces only those). Read it with
`python -m bench.heapdump --show OUT.snap [--by filename|lineno|traceback] [--top N]`.
With `BENCH_TRACEMALLOC_COLLECT=1`, after the snapshot: the heap unfrozen and fully
collected, the traced bytes before and after in the log (garbage that only a full
collection frees).
With `BENCH_TRACEMALLOC_PEAK=1`, also OUT.snap.peak: a snapshot taken whenever the
traced bytes reach a new high by 5% or more (looked at every 0.2 s), so a transient
that sets the peak RSS (a first plan, a first full encode) is seen, not only what is
left at the end. `BENCH_TRACEMALLOC_PEAK_FROM=MiB`: none below that many traced MiB (a
snapshot of a big heap takes seconds: only the top of the curve is worth them).
tracemalloc's own bookkeeping is in RSS (about as much again as what it traces), so
a run under it measures where the bytes go, not how many the process holds.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from types import FrameType


def show(path: Path, by: str, top: int) -> None:
    snap = tracemalloc.Snapshot.load(str(path)).filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),))
    stats = snap.statistics(by)
    total = sum(s.size for s in stats)
    print(f"{total / 2**20:.1f} MiB traced in {sum(s.count for s in stats)} blocks")
    for s in stats[:top]:
        where = s.traceback.format(limit=4) if by == "traceback" else [str(s.traceback)]
        print(f"{s.size / 2**20:8.2f} MiB {s.count:9d} blocks  {where[0].strip()}")
        for line in where[1:]:
            print(f"{'':29s}{line.strip()}")


def collect_report() -> None:
    """How much of the heap is garbage only a full collection would free: the frozen
    objects unfrozen (`controllers.runtime.gctune` freezes the heap), then
    `gc.collect()`; the traced bytes before and after, on stderr (the log)."""
    before = tracemalloc.get_traced_memory()[0]
    frozen = gc.get_freeze_count()
    gc.unfreeze()
    found = gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    print(f"heapdump_collect frozen={frozen} unreachable={found} "
          f"traced_before_mib={before / 2**20:.1f} traced_after_mib={after / 2**20:.1f}",
          file=sys.stderr, flush=True)


def _watch_peak(path: Path) -> None:
    """A snapshot to `path` at each new high of the traced bytes (5% over the last)."""
    high = int(float(os.environ.get("BENCH_TRACEMALLOC_PEAK_FROM", "0")) * 2**20)
    while True:
        time.sleep(0.2)
        now = tracemalloc.get_traced_memory()[0]
        if now > high * 1.05:
            high = now
            tmp = path.with_name(path.name + ".part")
            tracemalloc.take_snapshot().dump(str(tmp))
            os.replace(tmp, path)
            print(f"heapdump_peak traced_mib={now / 2**20:.1f}", file=sys.stderr, flush=True)


def main() -> int:
    if sys.argv[1:2] == ["--show"]:
        args = sys.argv[2:]
        by = args[args.index("--by") + 1] if "--by" in args else "lineno"
        top = int(args[args.index("--top") + 1]) if "--top" in args else 40
        show(Path(args[0]), by, top)
        return 0
    out = Path(sys.argv[1])
    tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "1")))

    def dump(_signum: int, _frame: FrameType | None) -> None:
        tmp = out.with_name(out.name + ".part")
        tracemalloc.take_snapshot().dump(str(tmp))
        if os.environ.get("BENCH_TRACEMALLOC_COLLECT"):
            collect_report()
        os.replace(tmp, out)  # whole or not at all, for whoever waits for it

    signal.signal(signal.SIGUSR2, dump)
    if os.environ.get("BENCH_TRACEMALLOC_PEAK"):
        threading.Thread(target=_watch_peak, args=(out.with_name(out.name + ".peak"),),
                         daemon=True).start()
    from controllers.cli import main as fleet

    rest = sys.argv[2:]
    if rest[:2] == ["-m", "controllers.cli"]:  # as `bench.e2e` builds the command
        rest = rest[2:]
    return fleet(rest)


if __name__ == "__main__":
    sys.exit(main())
