"""Team quota with borrowing inside a cohort (Kueue's ClusterQueue semantics, fleet-wide).

Per team and flavour a TeamQuota gives a `nominal` number of GPUs and an optional
`borrowingLimit`. A placement of `g` GPUs fits when the team's usage after it is
- within its nominal: always (nominal is the team's guarantee), or
- above nominal by at most `borrowingLimit` (unset: no limit), and the extra GPUs it
  borrows are covered by the cohort's slack: the other members' unused nominal minus
  what the other members already borrow. A team outside any cohort cannot borrow.
A team without a TeamQuota has no limit; a team with one may not use a flavour its
TeamQuota does not list (nominal 0, as in Kueue).

Quota is accounting, not hardware: the Capacity filter guards the GPUs themselves.
Over quota is a Pending reason, never an error. The check reads only the keys it needs
(the team's own usage; the cohort's only when borrowing), which keeps the incremental
planner's dirty sets small.
"""

from __future__ import annotations

from fleet.ids import Flavour, Team
from fleet.placement.snapshot import Snapshot
from fleet.placement.state import State


def quota_check(snap: Snapshot, state: State, team: Team, flavour: Flavour, gpus: int
                ) -> str | None:
    """None when `gpus` more fit the team's quota, else why not (one line)."""
    rule = snap.quotas.get(team)
    if rule is None:
        return None
    limit = rule.limits.get(flavour)
    if limit is None:
        return f"{team} has no {flavour} quota"
    used = state.used(team, flavour)
    after = used + gpus
    if after <= limit.nominal:
        return None
    over = after - limit.nominal
    if limit.borrowing_limit is not None and over > limit.borrowing_limit:
        return (f"{team} {flavour}: {used} used + {gpus} > {limit.nominal} nominal + "
                f"{limit.borrowing_limit} borrowing limit")
    if rule.cohort is None:
        return f"{team} {flavour}: {used} used + {gpus} > {limit.nominal} nominal (no cohort)"
    slack = 0
    for other in snap.cohorts.get(rule.cohort, ()):
        if other == team:
            continue
        olimit = snap.quotas[other].limits.get(flavour)
        nominal = olimit.nominal if olimit is not None else 0
        oused = state.used(other, flavour)
        slack += nominal - oused
    borrowed_now = max(0, used - limit.nominal)
    extra = over - borrowed_now
    if extra > slack:
        return (f"{team} {flavour}: {used} used + {gpus} > {limit.nominal} nominal, and "
                f"cohort {rule.cohort} lends only {max(0, slack)} more")
    return None
