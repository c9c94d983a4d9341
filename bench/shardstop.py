"""How a stopped replica's Leases went, seen from the home: let go, or lapsed.

`bench.shards` stops a replica with SIGTERM (how Kubernetes ends a pod in a rolling
update) and checks from the outside what a clean stop promises
(`controllers.runtime.leadership.Leadership.release`, docs/safety.md): the process exits
0 and every Lease it held (the leader's, its shards') is let go, not left to lapse. The
replica logs each release at info (`leader_lease_released`, `shard_released`) and the
bench runs it at warning, so the proof is read from the Lease objects in the home, every
`EVERY` seconds from the stop on, until another replica holds each (when it took each
is the rest of the takeover: a survivor looks every 2 s). How each went, from the first
read that no longer names the stopped replica:

- seen with an empty `holderIdentity`: let go (`clusters.leader.LeaderElector.release`);
- taken by another replica with an `acquireTime` before the `renewTime` read just before
  the stop + its `leaseDurationSeconds`: taken before it could have lapsed (its last
  renew was that one or a later one), so let go (the empty holder itself may fall
  between two reads);
- taken later: lapsed, as after a SIGKILL; never seen to change: still held.

The warnings a failed release logs (`RELEASE_FAILURES`) are read from its log.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import anyio

from clusters.client import LEASE, KubeClient
from clusters.errors import ClusterError

EVERY = 0.1
"""Seconds between two reads of the Leases while a stop is watched."""

RELEASE_FAILURES = ("leases_not_released", "leases_release_timed_out",
                    "leader_release_failed", "shard_release_failed")
"""What `Leadership.release` and `LeaderElector.release` log (at warning) when a Lease
is not let go."""

How = Literal["let go", "lapsed", "held", "unknown"]


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def verdict(before: Mapping[str, Any], after: Mapping[str, Any] | None) -> How:
    """How a Lease whose spec was `before` while the stopped replica held it went,
    given its spec `after` as first seen not held by it (None: never seen so)."""
    if after is None:
        return "held"
    if not after.get("holderIdentity"):
        return "let go"
    taken = _time(after.get("acquireTime"))
    renewed = _time(before.get("renewTime"))
    duration = before.get("leaseDurationSeconds")
    if taken is None or renewed is None or not isinstance(duration, int | float):
        return "unknown"
    return "let go" if taken < renewed + timedelta(seconds=duration) else "lapsed"


@dataclass
class Gone:
    """One Lease of the stopped replica, as the home showed it."""

    name: str
    before: dict[str, Any]
    """Its spec read just before the stop."""
    after: dict[str, Any] | None = None
    """Its spec when first seen no longer held by the stopped replica."""
    seen_after: float | None = None
    """Seconds from the stop to that read."""
    taker: str | None = None
    """Who holds it since (None: nobody yet)."""
    taken_after: float | None = None
    """Seconds from the stop to the first read that showed it held by `taker`."""

    @property
    def how(self) -> How:
        return verdict(self.before, self.after)

    def describe(self) -> str:
        if self.after is None or self.seen_after is None:
            return f"{self.name} {self.how}"
        seen = [f"seen free {self.seen_after:.1f} s"] if not self.after.get(
            "holderIdentity") else []
        if self.taker is not None and self.taken_after is not None:
            seen.append(f"taken by {self.taker} {self.taken_after:.1f} s")
        return f"{self.name} {self.how} ({', '.join(seen)} after the stop)"


@dataclass
class Stopped:
    """What the outside saw of a stopped replica."""

    leases: list[Gone]
    exit_code: int | None = None
    exited_after: float | None = None
    """Seconds from the stop to the process's end (None: still running)."""
    failures: Counter[str] = field(default_factory=Counter)
    """The release warnings in its log (`RELEASE_FAILURES`)."""

    def problems(self) -> list[str]:
        """Why this was not a clean stop (empty: it was)."""
        out = []
        if self.exit_code != 0:
            out.append(f"exit code {self.exit_code}" if self.exit_code is not None
                       else "still running")
        out += [f"Lease {g.name} {g.how}" for g in self.leases if g.how != "let go"]
        out += [f"{event} x{n} in its log" for event, n in sorted(self.failures.items())]
        return out


async def held_by(kube: KubeClient, namespace: str, identity: str) -> dict[str, dict[str, Any]]:
    """The spec of every Lease in `namespace` that names `identity` as its holder."""
    listed = await kube.request("GET", LEASE.collection(namespace), verb="list")
    return {str(item["metadata"]["name"]): dict(item.get("spec") or {})
            for item in listed.get("items") or []
            if (item.get("spec") or {}).get("holderIdentity") == identity}


async def watch_stop(kube: KubeClient, namespace: str, identity: str,
                     leases: Mapping[str, dict[str, Any]], proc: subprocess.Popen[bytes],
                     stopped_at: float, within: float) -> Stopped:
    """Read the Leases `leases` (held by `identity` before its stop at `stopped_at`,
    `time.perf_counter`) until another replica holds each and `proc` has ended, or for
    `within` seconds."""
    seen = Stopped([Gone(name, dict(spec)) for name, spec in sorted(leases.items())])
    while time.perf_counter() - stopped_at < within:
        now = time.perf_counter() - stopped_at
        if seen.exited_after is None and proc.poll() is not None:
            seen.exit_code, seen.exited_after = proc.returncode, now
        open_ = [g for g in seen.leases if g.taker is None]
        if not open_ and seen.exited_after is not None:
            break
        if open_:
            try:
                listed = await kube.request("GET", LEASE.collection(namespace), verb="list",
                                            retry=False)
            except (ClusterError, TimeoutError):
                listed = {}
            specs = {str(item["metadata"]["name"]): dict(item.get("spec") or {})
                     for item in listed.get("items") or []}
            for g in open_:
                spec = specs.get(g.name)
                holder = None if spec is None else spec.get("holderIdentity")
                if spec is None or holder == identity:
                    continue
                if g.after is None:
                    g.after, g.seen_after = spec, now
                if holder:
                    g.taker, g.taken_after = str(holder), now
        await anyio.sleep(EVERY)
    return seen


def release_failures(lines: Iterable[str]) -> Counter[str]:
    """The release warnings (`RELEASE_FAILURES`) among a replica's JSON log lines."""
    out: Counter[str] = Counter()
    for line in lines:
        try:
            event = json.loads(line).get("event")
        except (ValueError, AttributeError):
            continue
        if event in RELEASE_FAILURES:
            out[event] += 1
    return out


def read_failures(log: Path) -> Counter[str]:
    return release_failures(log.read_text(errors="replace").splitlines())
