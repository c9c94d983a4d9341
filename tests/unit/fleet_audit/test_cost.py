"""GPU cost from ledger periods, against figures computed by hand."""

from __future__ import annotations

import pytest

from fleet.audit import Period, build_periods
from fleet.cost import CostLine, GroupBy, gpu_cost
from fleet.ledger import rows_of
from tests.unit.fleet_audit.builders import at, docs, fleet_at, placed, pruned

FLEET = fleet_at({"eu-fra-1": "DE", "us-east-1": "US"})

# nlp/a: 16 h100 on eu-fra-1 (2.50/GPU-h) 10:00-12:00            = 32 GPU-h, 80.00
# nlp/b:  8 h100 on us-east-1 (2.50)      11:00-still running      until 13:00 = 16 GPU-h, 40.00
# cv/c:   8 a100 on us-east-1 (no price)  12:30-13:30 (end at 13:00) = 4 GPU-h unpriced
LEDGER = docs(
    placed("10:00", "nlp/a", "eu-fra-1", "DE"),
    placed("11:00", "nlp/b", "us-east-1", "US", data_class="public", gpus=8),
    pruned("12:00", "nlp/a", "eu-fra-1"),
    placed("12:30", "cv/c", "us-east-1", "US", data_class="public", gpus=8,
           flavour="a100-80gb"),
    pruned("13:30", "cv/c", "us-east-1"),
)


def periods() -> list[Period]:
    return build_periods(rows_of(LEDGER), {"c1": FLEET}.get).periods


@pytest.mark.parametrize(("by", "start", "expected"), [
    ("team", None, [CostLine("nlp", 48.0, 120.0), CostLine("cv", 4.0, 0.0, 4.0)]),
    ("region", None, [CostLine("region-de", 32.0, 80.0),
                      CostLine("region-us", 20.0, 40.0, 4.0)]),
    ("flavour", None, [CostLine("h100-80gb", 48.0, 120.0),
                       CostLine("a100-80gb", 4.0, 0.0, 4.0)]),
    # from 11:30: nlp/a 0.5 h x 16 = 8 GPU-h (20.00); nlp/b 1.5 h x 8 = 12 GPU-h (30.00)
    ("team", at("11:30"), [CostLine("nlp", 20.0, 50.0), CostLine("cv", 4.0, 0.0, 4.0)]),
], ids=["by-team", "by-region", "by-flavour", "clipped-window"])
def test_cost_totals_match_the_hand_computed_figures(by: GroupBy, start: str | None,
                                                     expected: list[CostLine]) -> None:
    lines, total = gpu_cost(periods(), by=by, start=start, end=at("13:00"))
    assert lines == expected
    assert total.gpu_hours == sum(c.gpu_hours for c in expected)
    assert total.cost == sum(c.cost for c in expected)


def test_a_price_is_the_one_offered_when_the_period_opened() -> None:
    dearer = fleet_at({"eu-fra-1": "DE"}, prices={"h100-80gb": 4.0})
    ledger = docs(placed("10:00", "nlp/a", "eu-fra-1", "DE", commit="c1"),
                  placed("11:00", "nlp/a", "eu-fra-1", "DE", commit="c2", event="Applied"))
    ps = build_periods(rows_of(ledger), {"c1": FLEET, "c2": dearer}.get).periods
    _, total = gpu_cost(ps, by="team", end=at("12:00"))
    assert total == CostLine("total", 32.0, 80.0)


def test_a_window_before_anything_ran_costs_nothing() -> None:
    lines, total = gpu_cost(periods(), by="team", start=at("08:00"), end=at("09:00"))
    assert lines == [] and total == CostLine("total", 0.0, 0.0)
