"""`fleet cluster add NAME --context CTX` and `fleet cluster list`: member clusters
registered as credentials Secrets on the management cluster (`clusters.registration`,
`clusters.credentials`), read by a controller run with `--cluster-secrets`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from clusters.namespace import DEFAULT as DEFAULT_NAMESPACE
from controllers.commands.common import (
    add_format_argument,
    add_token_argument,
    fail,
    write_doc,
)

DESCRIPTION = """\
Register member clusters without paths or credentials in Git (as `argocd cluster add`).

`fleet cluster add NAME --context CTX --home-kubeconfig H` creates on the member (the
kubeconfig's context CTX) a ServiceAccount `aifleet-manager`, a ClusterRole and
ClusterRoleBinding scoped to what aifleet reads and writes, and a token for it; then
writes the Secret NAME (labelled aifleet.dev/cluster-credentials=true: server, CA,
token) into the controller's namespace on the management cluster. A controller run
with --cluster-secrets reaches each Cluster file that names no kubeconfig through it.

`fleet cluster list` shows each registered cluster and whether it can be reached: from
the running controller (--server), else by connecting with each Secret.

Examples:
  fleet cluster add eu-fra-1 --context eu-fra-1 --home-kubeconfig mgmt.yaml
  fleet cluster list --home-kubeconfig mgmt.yaml
  fleet cluster list --server http://controller:8080"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cluster", help="register member clusters (credentials Secrets)",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    add = verbs.add_parser("add", help="register a member cluster",
                           description=DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add.add_argument("name", metavar="NAME", help="the cluster's name (its Cluster file's)")
    add.add_argument("--context", required=True, help="the member's kubeconfig context")
    add.add_argument("--kubeconfig", default=None,
                     help="kubeconfig holding --context (default: $KUBECONFIG, merged, "
                          "or ~/.kube/config)")
    _home_arguments(add)
    add.set_defaults(handler=run_add)
    ls = verbs.add_parser("list", help="registered clusters and their connection state")
    _home_arguments(ls)
    ls.add_argument("--server", default=os.environ.get("FLEET_SERVER"),
                    help="a running controller's URL: show its view of each cluster "
                         "(default: $FLEET_SERVER; unset: connect with each Secret)")
    add_token_argument(ls)
    add_format_argument(ls, ("table", "json"), "table")
    ls.set_defaults(handler=run_list)
    p.set_defaults(handler=lambda _a: fail("cluster: give a verb: add or list"))


def _home_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home-kubeconfig", default=None,
                   help="kubeconfig of the management cluster (default: --kubeconfig's "
                        "default)")
    p.add_argument("--home-context", default=None,
                   help="the management cluster's context (default: its current one)")
    p.add_argument("--namespace", default=os.environ.get("FLEET_NAMESPACE") or DEFAULT_NAMESPACE,
                   help="the controller's namespace on the management cluster, where the "
                        "credentials Secrets are (the chart's release namespace; default: "
                        f"$FLEET_NAMESPACE, else {DEFAULT_NAMESPACE})")


async def _client(name: str, kubeconfig: str | None, context: str | None) -> Any:
    from clusters.client import KubeClient, RetryPolicy
    from clusters.kubeconfig import ConnectionSpec, api_client

    api = await api_client(ConnectionSpec(name, kubeconfig, context))
    return KubeClient(name, api, retry=RetryPolicy(attempts=2, base=0.1, cap=0.5))


def run_add(args: argparse.Namespace) -> int:
    import anyio

    from clusters.errors import ClusterError

    try:
        source, warning = anyio.run(_add, args)
    except (ClusterError, OSError) as e:
        fail(f"cluster add {args.name}: {e}")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"cluster {args.name}: credentials Secret {args.namespace}/{args.name} written "
          f"on the management cluster ({source})")
    return 0


async def _add(args: argparse.Namespace) -> tuple[str, str]:
    from clusters import registration as reg
    from clusters.kubeconfig import ConnectionSpec, read_kubeconfig

    doc, context, base = read_kubeconfig(ConnectionSpec(args.name, args.kubeconfig,
                                                        args.context))
    own = reg.kubeconfig_credentials(doc, context, base)
    member = await _client(args.name, args.kubeconfig, args.context)
    try:
        for obj in reg.member_objects(args.namespace):
            await reg.apply(member, obj)
        got = await reg.token_of_account(member, args.namespace)
    finally:
        await member.close()
    warning = ""
    if got is not None:
        token, ca, source = got
        creds = reg.Credentials(server=own.server, source=source, ca=ca or own.ca,
                                token=token)
    else:
        creds = own
        warning = (f"{args.context}: the member filled no ServiceAccount token and serves "
                   "no serviceaccounts/token; the Secret holds the kubeconfig context's "
                   "own credentials, which may reach more than the aifleet-manager role")
    home = await _client("home", args.home_kubeconfig, args.home_context)
    try:
        await reg.write_credentials(home, args.name, args.namespace, creds)
    finally:
        await home.close()
    return creds.source, warning


def run_list(args: argparse.Namespace) -> int:
    import anyio

    from clusters.errors import ClusterError

    if not args.server:
        try:
            rows = anyio.run(_rows_from_secrets, args)
        except (ClusterError, OSError, TimeoutError) as e:
            fail(f"cluster list: the management cluster: {e}")
    else:
        rows = _rows_from_controller(args)
    if args.format != "table":
        write_doc({"clusters": rows}, args.format)
        return 0
    print(f"{'NAME':<20} {'STATE':<14} DETAIL")
    for r in rows:
        print(f"{r['name']:<20} {r['state']:<14} {r['detail']}".rstrip())
    return 0


def _rows_from_controller(args: argparse.Namespace) -> list[dict[str, str]]:
    from controllers.commands.common import auth_headers
    from controllers.commands.statusread import fetch

    doc = fetch(args.server, auth_headers(args))
    return [{"name": str(c.get("name")), "state": str(c.get("health") or "Unknown"),
             "detail": str(c.get("message") or "")} for c in doc.get("clusters") or []]


async def _rows_from_secrets(args: argparse.Namespace) -> list[dict[str, str]]:
    from clusters.credentials import kubeconfig_of_secret, list_credentials

    home = await _client("home", args.home_kubeconfig, args.home_context)
    try:
        secrets = await list_credentials(home, args.namespace)
    finally:
        await home.close()
    rows = []
    for secret in secrets:
        name = str((secret.get("metadata") or {}).get("name", ""))
        rows.append({"name": name, **await _probe(name, secret, kubeconfig_of_secret)})
    return rows


async def _probe(name: str, secret: Any, make: Any) -> dict[str, str]:
    """Connect with the Secret and ask for /version: Reachable, or why not (no value
    of the Secret ever in it)."""
    import anyio

    from clusters.client import KubeClient, RetryPolicy
    from clusters.errors import ClusterError
    from clusters.kubeconfig import ConnectionSpec, api_client

    conn = ConnectionSpec(name, None, name, secret=name)
    try:
        api = await api_client(conn, inline=make(secret, name))
    except ClusterError as e:
        return {"state": "Invalid", "detail": str(e)}
    client = KubeClient(name, api, retry=RetryPolicy(attempts=1))
    try:
        with anyio.fail_after(10):
            version = await client.request("GET", "/version", verb="get")
        return {"state": "Reachable", "detail": str(version.get("gitVersion", ""))}
    except (ClusterError, TimeoutError) as e:
        return {"state": "Unreachable",
                "detail": str(e) if isinstance(e, ClusterError) else "no answer in 10 s"}
    finally:
        await client.close()
