"""`fleet version`: this client's version and, when one answers, the controller's."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from controllers.commands.common import (
    add_format_argument,
    add_token_argument,
    auth_headers,
    fail,
    write_doc,
)

DESCRIPTION = """\
Print the fleet client's version and, with --server (or $FLEET_SERVER), the version of
the controller there (GET /version), as `kubectl version` does. A controller that does
not answer is one line on stderr and exit 2, after the client's version.

Examples:
  fleet version
  fleet version --server http://127.0.0.1:8080 -o json"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("version", help="client and controller versions",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default=os.environ.get("FLEET_SERVER") or None,
                   help="also ask the controller at this URL (default: $FLEET_SERVER; "
                        "none: the client only)")
    add_token_argument(p)
    add_format_argument(p, ("text", "json"), "text")
    p.set_defaults(handler=run)


def _server_version(server: str, headers: dict[str, str] | None = None
                    ) -> dict[str, Any] | str:
    """The controller's GET /version answer, or why there is none."""
    import httpx

    try:
        r = httpx.get(f"{server.rstrip('/')}/version", timeout=10, headers=headers or {})
        r.raise_for_status()
        doc = r.json()
    except (httpx.HTTPError, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    if not isinstance(doc, dict) or not isinstance(doc.get("version"), str):
        return "its /version answer has no version"
    return doc


def run(args: argparse.Namespace) -> int:
    from controllers.version import version

    doc: dict[str, Any] = {"client": {"version": version()}}
    problem = None
    if args.server:
        answer = _server_version(args.server, auth_headers(args))
        if isinstance(answer, str):
            problem = f"no controller version from {args.server}: {answer}"
        else:
            doc["server"] = {"url": args.server, "version": answer["version"]}
    if args.format in ("json", "yaml"):
        write_doc(doc, args.format)
    else:
        print(f"Client version: {doc['client']['version']}")
        if "server" in doc:
            print(f"Controller version: {doc['server']['version']} ({args.server})")
    if problem:
        sys.stdout.flush()
        fail(problem)
    return 0
