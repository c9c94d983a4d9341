"""Builders for audit and cost tests: a fleet at a commit, and sealed ledger records."""

from __future__ import annotations

from typing import Any

import yaml

from fleet.audit import ClusterInfo, FleetAt
from fleet.diagnostics import SourceRef
from fleet.ledger import Entry, seal
from fleet.models import ResidencyPolicy
from fleet.residency import build_residency
from tests.fleetdocs import POLICY


def fleet_at(jurisdictions: dict[str, str],
             prices: dict[str, float | None] | None = None) -> FleetAt:
    pol = ResidencyPolicy.model_validate(yaml.safe_load(POLICY))
    residency, errors = build_residency([(pol, SourceRef("policies/residency.yaml", 1, {}))])
    assert not errors
    prices = {"h100-80gb": 2.5, "a100-80gb": None} if prices is None else prices
    return FleetAt(residency, {c: ClusterInfo(j, f"region-{j.lower()}", prices)
                               for c, j in jurisdictions.items()})


def docs(*entries: Entry) -> list[dict[str, Any]]:
    return [r.to_json() for r in seal(entries)]


def at(hhmm: str, day: str = "2026-11-23") -> str:
    return f"{day}T{hhmm}:00Z"


def placed(time: str, workload: str, cluster: str, jurisdiction: str, *, commit: str = "c1",
           data_class: str | None = "eu-personal", gpus: int = 16,
           flavour: str = "h100-80gb", event: Any = "Placed",
           from_cluster: str | None = None) -> Entry:
    return Entry(at(time), event, workload, commit=commit, cluster=cluster,
                 from_cluster=from_cluster, jurisdiction=jurisdiction, data_class=data_class,
                 flavour=flavour, gpus=gpus)


def pruned(time: str, workload: str, cluster: str, *, commit: str = "c1") -> Entry:
    return Entry(at(time), "Pruned", workload, commit=commit, cluster=cluster)
