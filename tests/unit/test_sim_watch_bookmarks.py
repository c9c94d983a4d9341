"""When the simulated watch cache sends bookmarks: `clusters.sim.watch.next_bookmark`,
as kube-apiserver's `cacheWatcher.nextBookmarkTime`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from clusters.sim.watch import PRE_TIMEOUT_SECONDS, next_bookmark


def test_a_minute_apart_on_a_long_watch() -> None:
    assert next_bookmark(0.0, 1800.0, 60.0) == 60.0
    assert next_bookmark(1770.0, 1800.0, 60.0) == 1798.0  # 2 s before the deadline
    assert next_bookmark(1798.0, 1800.0, 60.0) is None  # then no more


@given(now=st.floats(0, 1e5), timeout=st.floats(0, 4000), every=st.floats(0.01, 120))
def test_never_after_the_pre_timeout_moment_and_never_now(now: float, timeout: float,
                                                          every: float) -> None:
    deadline = now + timeout
    at = next_bookmark(now, deadline, every)
    if at is None:
        assert min(now + every, deadline - PRE_TIMEOUT_SECONDS) <= now
    else:
        assert now < at <= now + every
        assert at <= deadline - PRE_TIMEOUT_SECONDS
