"""GPU cost from the ledger: GPU-hours of each placement period times the flavour's price.

For chargeback and showback. A period (see `fleet.audit`) is a workload running `gpus`
GPUs of one flavour on one cluster from a start to an end; its GPU-hours are clipped to
the report's window, and priced with the `pricePerHour` (per GPU) the cluster offered
for that flavour at the commit that opened the period, so a later price change does not
rewrite what was already spent. A period with no price is counted in GPU-hours and
reported as unpriced, never as free. Periods still running count up to the window's end,
which the caller supplies (the core reads no clock).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from fleet.audit import Period

GroupBy = Literal["team", "region", "flavour", "cluster", "workload"]
GROUP_BY: tuple[GroupBy, ...] = ("team", "region", "flavour", "cluster", "workload")


@dataclass(frozen=True, slots=True)
class CostLine:
    key: str
    gpu_hours: float
    cost: float
    unpriced_gpu_hours: float = 0.0


def parse_time(value: str) -> datetime:
    """An RFC 3339 time (`2026-11-23T10:00:00Z`) as an aware datetime; ValueError if not."""
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"time {value!r} has no timezone (use Z for UTC)")
    return t


def _key(p: Period, by: GroupBy) -> str:
    if by == "team":
        return p.team
    if by == "region":
        return p.region or "(unknown region)"
    if by == "flavour":
        return p.flavour or "(unknown flavour)"
    if by == "cluster":
        return p.cluster
    return p.workload


def gpu_cost(periods: Iterable[Period], *, by: GroupBy, end: str,
             start: str | None = None) -> tuple[list[CostLine], CostLine]:
    """Per group (sorted by cost, then name) and the total, for [start, end)."""
    t_end = parse_time(end)
    t_start = parse_time(start) if start else None
    hours: dict[str, list[float]] = {}
    for p in periods:
        if p.gpus <= 0:
            continue
        s = parse_time(p.start)
        e = parse_time(p.end) if p.end is not None else t_end
        if t_start is not None and s < t_start:
            s = t_start
        e = min(e, t_end)
        if e <= s:
            continue
        gh = (e - s).total_seconds() / 3600 * p.gpus
        acc = hours.setdefault(_key(p, by), [0.0, 0.0, 0.0])
        acc[0] += gh
        if p.price is None:
            acc[2] += gh
        else:
            acc[1] += gh * p.price
    lines = [CostLine(k, v[0], v[1], v[2]) for k, v in hours.items()]
    lines.sort(key=lambda c: (-c.cost, -c.gpu_hours, c.key))
    total = CostLine("total", sum(c.gpu_hours for c in lines), sum(c.cost for c in lines),
                     sum(c.unpriced_gpu_hours for c in lines))
    return lines, total
