"""Using the second core in one-shot commands: `fork_map` and `Background`.

Reading a 10,000-file fleet is mostly parsing YAML, pure Python work on one core;
a PR check (`fleet plan --base --head`, `fleet validate`) on
a fresh CI runner has no cache and waits for all of it. The work is one pure function
per item, so it splits cleanly: a forked child maps the second part of the list while
this process maps the first, then sends its results back pickled through a pipe.
Fork, not a process pool: the child inherits the imported modules and the items (Git
blobs are read through the parent's open repository), so nothing is re-imported or
re-sent, and the only cost is pickling the results once.

It is a plain fallback to a serial map whenever it could go wrong: no `os.fork`, one
CPU, a small list, or other threads running (a forked child of a threaded process
may inherit a lock some other thread held, so the long-running controller never forks
here). If the child fails for any reason, its part is mapped here: the result is the
same, only slower.

`Background` forks side work off (writing a cache: pickling 10,000 parsed files costs
half a second) so that it overlaps the rest of the command.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MIN_ITEMS = 1000
"""Below this many items forking costs more than it saves."""

_CHILD_SHARE = 0.42
"""The child also pickles its results and the parent unpickles them after its own part,
so the child takes less than half (the fastest share timed with `bench.validate`; the
commit that set it has the figures)."""


def can_fork() -> bool:
    """Whether a helper may be forked from here, now (`AIFLEET_NO_FORK=1`: never)."""
    return (os.environ.get("AIFLEET_NO_FORK", "") in ("", "0") and hasattr(os, "fork")
            and (os.cpu_count() or 1) > 1 and threading.active_count() == 1)


def fork_map(fn: Callable[[T], R], items: Sequence[T], *, min_items: int = MIN_ITEMS
             ) -> list[R]:
    """`[fn(x) for x in items]`, in two processes when it pays. `fn` must be pure and
    its results picklable."""
    if len(items) < min_items or not can_fork():
        return [fn(x) for x in items]
    cut = len(items) - int(len(items) * _CHILD_SHARE)
    mine, theirs = items[:cut], items[cut:]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child (coverage does not follow it)
        code = 1
        try:
            os.close(r)
            data = pickle.dumps([fn(x) for x in theirs], protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(w, "wb") as out:
                out.write(data)
            code = 0
        finally:
            os._exit(code)  # no atexit handlers, no flushing of the parent's buffers
    os.close(w)
    inp = os.fdopen(r, "rb")
    try:
        results = [fn(x) for x in mine]
        data = inp.read()
    except BaseException:
        # Interrupted here: closing the pipe ends the child's write; never leave it.
        inp.close()
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    inp.close()
    _, status = os.waitpid(pid, 0)
    if status == 0:
        try:
            rest: list[R] = pickle.loads(data)
        except Exception:  # noqa: BLE001 - a truncated result: do the work here instead
            rest = []
        if len(rest) == len(theirs):
            return results + rest
    return results + [fn(x) for x in theirs]


class Background:
    """Side work a one-shot command need not wait for before going on (writing its
    caches), forked off while it plans; `wait()` (or leaving the `with`) before exiting,
    so nothing is left running behind the command. Runs the work inline when it cannot
    fork."""

    def __init__(self) -> None:
        self._pids: list[int] = []

    def run(self, fn: Callable[[], object]) -> None:
        if not can_fork():
            fn()
            return
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                fn()
                code = 0
            finally:
                os._exit(code)
        self._pids.append(pid)

    def wait(self) -> int:
        """Wait for all of it; how many failed."""
        failed = 0
        for pid in self._pids:
            _, status = os.waitpid(pid, 0)
            failed += status != 0
        self._pids.clear()
        return failed

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc: object) -> None:
        self.wait()
