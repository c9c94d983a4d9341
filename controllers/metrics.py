"""Prometheus text exposition for the controller's `/metrics`.

A handful of counters and gauges with labels, and duration summaries; small enough that
a dependency would cost more than it saves. Names follow Prometheus conventions
(`aifleet_` prefix, `_total` for counters, `_seconds` for durations).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass(slots=True)
class Family:
    name: str
    kind: str  # counter | gauge | summary
    help: str
    samples: dict[Labels, float] = field(default_factory=dict)
    observations: dict[Labels, list[float]] = field(default_factory=dict)

    def set(self, value: float, **labels: str) -> None:
        self.samples[tuple(sorted(labels.items()))] = value

    def inc(self, value: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.samples[key] = self.samples.get(key, 0.0) + value

    def observe(self, value: float, **labels: str) -> None:
        obs = self.observations.setdefault(tuple(sorted(labels.items())), [])
        obs.append(value)
        del obs[:-2000]

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in sorted(self.samples.items()):
            yield f"{self.name}{_labels(labels)} {_num(value)}"
        for labels, obs in sorted(self.observations.items()):
            ordered = sorted(obs)
            for q in (0.5, 0.9, 0.99):
                v = ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0
                yield f"{self.name}{_labels((*labels, ('quantile', str(q))))} {_num(v)}"
            yield f"{self.name}_sum{_labels(labels)} {_num(sum(obs))}"
            yield f"{self.name}_count{_labels(labels)} {len(obs)}"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


class Registry:
    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def family(self, name: str, kind: str, help: str) -> Family:
        fam = self.families.get(name)
        if fam is None:
            fam = self.families[name] = Family(name, kind, help)
        return fam

    def counter(self, name: str, help: str) -> Family:
        return self.family(name, "counter", help)

    def gauge(self, name: str, help: str) -> Family:
        return self.family(name, "gauge", help)

    def summary(self, name: str, help: str) -> Family:
        return self.family(name, "summary", help)

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted(self.families):
            lines.extend(self.families[name].render())
        return "\n".join(lines) + "\n"
