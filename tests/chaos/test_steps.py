"""The chaos test's generator: a seed replays the same steps (what a failure's
`AIFLEET_CHAOS_SEED=<n>` relies on), and a CI-sized run exercises every kind of step."""

from __future__ import annotations

import hashlib

from tests.chaos.fleet import initial_files
from tests.chaos.steps import Generator, Step


def _texts(seed: int, n: int = 200) -> list[str]:
    gen = Generator(seed, leader_elect=True)
    gen.committed(Step("init", "", files=initial_files(), message="Initial fleet"), "0" * 40)
    out = []
    for i in range(n):
        step = gen.next()
        out.append(step.text)
        if step.files is not None:  # a made-up sha per commit, as the remote gives one
            gen.committed(step, hashlib.sha1(f"{seed}-{i}".encode()).hexdigest())
        elif step.kind in ("force-push", "forward"):
            gen.moved(step)
        gen.fault(step)
    return out


def test_a_seed_replays_the_same_steps() -> None:
    assert _texts(7) == _texts(7)
    assert _texts(7) != _texts(8)


def test_a_ci_sized_run_takes_every_kind_of_step() -> None:
    texts = [t for seed in (1, 2, 3, 4) for t in _texts(seed, 50)]
    for start in ("delete workloads/", "delete clusters/", "delete all", "git mv", "corrupt",
                  "relabel", "force-push main back", "revert", "cluster", "next",
                  "controller restart", "SIGKILL", "restore", "Lease cluster"):
        assert any(t.startswith(start) for t in texts), start
    assert any(" replicas -> " in t for t in texts)
    assert any(t.startswith("delete ") and "/12 workload files" in t for t in texts)
    for how in ("unclosed-brace", "non-utf8", "duplicate-key", "tab-indent", "kind-typo",
                "huge-int"):
        assert any(f"({how})" in t for t in texts), how
