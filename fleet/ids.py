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


def team_of(wid: str) -> Team:
    """The team of a workload id `team/name`: what comes before its first slash (the
    whole value when there is none: `*`, a record for the whole fleet). The one place a
    workload id is split; `fleet.render` maps ids to labels and back."""
    return Team(wid.partition("/")[0])
