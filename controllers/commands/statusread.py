"""The status document, from a running controller (`--server`) or straight from the
clusters (`--live`): what `fleet status`, `get`, `wait`, `suspend`, `resume` and `sync`
share (commands never import each other: an import-linter contract in pyproject.toml)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from controllers.commands.common import add_token_argument, auth_headers, fail


def add_server_argument(p: argparse.ArgumentParser) -> None:
    """`--server` and the token to show it (`--token-file`, $FLEET_TOKEN)."""
    p.add_argument("--server", default=os.environ.get("FLEET_SERVER", "http://127.0.0.1:8080"),
                   help="the controller's URL (default: $FLEET_SERVER or "
                        "http://127.0.0.1:8080)")
    add_token_argument(p)


def add_live_arguments(p: argparse.ArgumentParser) -> None:
    """`--live` and what it needs: read what runs from the clusters, no controller."""
    live = p.add_argument_group(
        "live", "read straight from the clusters instead of a controller (read-only)")
    live.add_argument("--live", action="store_true",
                      help="connect to every cluster of the fleet repo and show what runs")
    live.add_argument("--repo", default=".",
                      help="with --live: the fleet repo, or a folder in one (default: .)")
    live.add_argument("--ref", default="HEAD", help="with --live: the commit to compare with")
    live.add_argument("--kubeconfig", default=None,
                      help="with --live: kubeconfig for clusters whose file names none")
    live.add_argument("--allow-exec-plugins", action="store_true",
                      help="with --live: allow kubeconfig exec/auth-provider plugins")
    live.add_argument("--timeout", type=float, default=15.0,
                      help="with --live: seconds to wait for the clusters to answer")


def fetch(server: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return fetch_with_age(server, headers)[0]


def fetch_with_age(server: str, headers: dict[str, str] | None = None
                   ) -> tuple[dict[str, Any], float | None]:
    """The status document and its `Age` (seconds since the controller built it, RFC
    9111 5.1; None when the answer gives none): a controller that could not build a
    newer one in time answers with its last, and says how old it is."""
    import httpx  # here, not at the top: every `fleet` command would pay for its import

    try:
        # no-cache: a one-shot read wants the state of now, not the controller's
        # last document (which a page polling every second is served)
        r = httpx.get(f"{server.rstrip('/')}/api/v1/status", timeout=10,
                      headers={**(headers or {}), "Cache-Control": "no-cache"})
        if r.status_code in (401, 403):
            fail(f"{server} refused the request ({r.status_code}): give a valid token "
                 "with --token-file or $FLEET_TOKEN")
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc, _age(r.headers.get("Age"))
    except httpx.HTTPError as e:
        fail(f"cannot read status from {server}: {e} (is `fleet run` or `fleet demo "
             "--keep-running` up?)")


def _age(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # not an age (RFC 9111 5.1: whole seconds): not shown


def fetch_live(args: argparse.Namespace) -> dict[str, Any]:
    import anyio  # here: building the parser must stay light

    from controllers.commands.common import read_snapshot
    from controllers.logs import configure
    from controllers.status.livestatus import live_status

    configure("warning")  # logs to stderr: stdout carries the document

    args.worktree = False
    snap = read_snapshot(args)
    doc: dict[str, Any] = anyio.run(lambda: live_status(
        snap, kubeconfig=args.kubeconfig, allow_exec=args.allow_exec_plugins,
        answer_within=args.timeout, ledger_repo=args.repo))
    return doc


def get_doc(args: argparse.Namespace) -> dict[str, Any]:
    """The status document from `--server`, or with `--live` from the clusters."""
    return get_doc_and_age(args)[0]


def get_doc_and_age(args: argparse.Namespace) -> tuple[dict[str, Any], float | None]:
    """`get_doc` and the document's age as the controller gave it (None with `--live`:
    read now)."""
    if args.live:
        return fetch_live(args), None
    return fetch_with_age(args.server, auth_headers(args))
