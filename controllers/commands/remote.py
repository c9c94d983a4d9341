"""Talking to a running controller over HTTP: what `fleet suspend`, `resume`, `sync`,
`wait` and `version` share. Every failure to reach it is one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from controllers.commands.common import fail
from controllers.commands.statusread import add_server_argument


def post_action(server: str, action: str, body: dict[str, Any],
                headers: dict[str, str] | None = None) -> dict[str, Any]:
    """POST /api/v1/<action> with a JSON body; the controller's answer. A refusal (4xx,
    with its `error`) or no answer at all exits 2 in one line."""
    import httpx  # here: building the parser must stay light

    url = f"{server.rstrip('/')}/api/v1/{action}"
    try:
        r = httpx.post(url, json=body, timeout=10, headers=headers or {})
    except httpx.HTTPError as e:
        fail(f"cannot reach the controller at {server}: {e} (is `fleet run` or `fleet demo "
             "--keep-running` up?)")
    try:
        answer = r.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        fail(f"{url}: HTTP {r.status_code}, not a controller's answer")
    if r.status_code >= 400 or not answer.get("ok"):
        fail(f"the controller refused: {answer.get('error') or f'HTTP {r.status_code}'}")
    return answer


def say(answer: dict[str, Any]) -> int:
    print(str(answer.get("message", "done")))
    sys.stdout.flush()
    return 0


def add_target_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("workload", nargs="?", metavar="WORKLOAD",
                   help=f"the workload id (team/name) to {verb}")
    p.add_argument("--cluster", metavar="CLUSTER",
                   help=f"{verb} every workload on this cluster instead")
    add_server_argument(p)


def target(args: argparse.Namespace) -> dict[str, str]:
    """The request body: the workload or the cluster, exactly one of them (else exit 2)."""
    if bool(args.workload) == bool(args.cluster):
        fail(f"{args.command}: name a WORKLOAD or --cluster CLUSTER (one of them)")
    return {"workload": args.workload} if args.workload else {"cluster": args.cluster}

