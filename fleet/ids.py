"""Typed identifiers used across the core.

`NewType`s cost nothing at run time but keep a cluster name from being passed where a
workload id is expected.
"""

from __future__ import annotations

from typing import NewType

WorkloadId = NewType("WorkloadId", str)
"""`<namespace>/<name>` of a Workload; the namespace is the team."""

ClusterName = NewType("ClusterName", str)
Flavour = NewType("Flavour", str)
"""A fleet-wide GPU flavour name such as `h100-80gb`."""

Team = NewType("Team", str)
Jurisdiction = NewType("Jurisdiction", str)
"""An ISO 3166-1 alpha-2 country code, where hardware physically is."""


def workload_id(namespace: str, name: str) -> WorkloadId:
    return WorkloadId(f"{namespace}/{name}")


def split_workload_id(wid: str) -> tuple[str, str]:
    """`team/name` -> (team, name); raises ValueError when there is no single slash."""
    team, sep, name = wid.partition("/")
    if not sep or not team or not name or "/" in name:
        raise ValueError(f"workload id {wid!r} is not <namespace>/<name>")
    return team, name
