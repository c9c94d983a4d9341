"""The seeded chaos test: random commits and faults against the real controller on a
small simulated fleet, with the safety invariants checked after every step.

CI runs 4 seeds x 50 steps (`make check` collects it; about 4 minutes on 2 cores). The
2,000-step run by hand (10 seeds x 200 steps, each seed's report kept):

    AIFLEET_CHAOS_SEEDS=10 AIFLEET_CHAOS_STEPS=200 AIFLEET_CHAOS_KEEP_GOING=1 \
    AIFLEET_CHAOS_REPORT_DIR=/tmp/chaos PATH=$PWD/.cache/bin:$PATH \
    .venv/bin/pytest tests/chaos/test_chaos.py -q

`AIFLEET_CHAOS_SEEDS` is a count (seeds 1..N) or a comma list; `AIFLEET_CHAOS_SEED=<n>`
runs one seed (what a failure prints); `AIFLEET_CHAOS_KEEP_GOING=1` carries on after a
violation and lists them all; `AIFLEET_CHAOS_TRACE=1` (with `-s`) prints each step with
the time between the in-process controller's log lines. See `tests/chaos/invariants.py`
for the invariants and
`tests/chaos/steps.py` for the steps.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.runner import Run

STEPS = int(os.environ.get("AIFLEET_CHAOS_STEPS", "50"))


def _seeds() -> list[int]:
    one = os.environ.get("AIFLEET_CHAOS_SEED")
    if one:
        return [int(one)]
    many = os.environ.get("AIFLEET_CHAOS_SEEDS", "4")
    if "," in many:
        return [int(s) for s in many.split(",") if s.strip()]
    return list(range(1, int(many) + 1))


def _keep(seed: int, text: str) -> None:
    """A long run by hand keeps every seed's step list and violations."""
    out = os.environ.get("AIFLEET_CHAOS_REPORT_DIR")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"seed{seed}.txt").write_text(text + "\n")


@pytest.mark.slow
@pytest.mark.timeout(60 + 25 * STEPS)
@pytest.mark.parametrize("seed", _seeds(), ids=lambda s: f"seed{s}")
async def test_chaos_keeps_the_safety_invariants(seed: int, tmp_path: Path) -> None:
    keep_going = os.environ.get("AIFLEET_CHAOS_KEEP_GOING") == "1"
    report = await Run(seed, STEPS, tmp_path).run(keep_going=keep_going)
    print(report.text(STEPS))
    _keep(seed, report.text(STEPS))
    if report.violations:
        pytest.fail(report.text(STEPS), pytrace=False)
