"""Dividing an inference workload's replicas over several clusters (Karmada "Divided").

Given the clusters chosen for a spread workload, in rank order, and how many replicas
each has room for, `divide` gives every cluster at least one replica and the rest in
proportion to its room (Karmada's dynamic weighting by available replicas), never more
than its room. Remainders go to the cluster with the most room left, the better-ranked
one on ties, so the result depends only on the inputs' order, never on chance.
"""

from __future__ import annotations


def divide(replicas: int, rooms: list[int]) -> list[int] | None:
    """Replicas per cluster, or None when they cannot all be placed (one each at least)."""
    n = len(rooms)
    total = sum(rooms)
    if n == 0 or n > replicas or total < replicas or min(rooms) < 1:
        return None
    shares = [max(1, min(room, replicas * room // total)) for room in rooms]
    while sum(shares) > replicas:
        for i in range(n - 1, -1, -1):
            if shares[i] > 1:
                shares[i] -= 1
                break
    while sum(shares) < replicas:
        best = max(range(n), key=lambda i: (rooms[i] - shares[i], -i))
        shares[best] += 1
    return shares
