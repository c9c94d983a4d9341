"""`fleet run`: the controller. Watches the fleet repo, places, applies, keeps it there."""

from __future__ import annotations

import argparse
import sys

from controllers.settings import (
    Settings,
    add_arguments,
    from_args,
    home_problem,
    listener_problem,
)

DESCRIPTION = """\
Run the fleet controller: fetch the fleet repo (any URL Git can fetch) every
--poll-interval seconds and on POST /hooks/git, place every workload on the clusters
its rules allow, server-side apply the result to every cluster and keep it there
(drift corrected, failover after an Unreachable grace period, stale copies removed when
a cluster returns). Serves /healthz, /readyz, /metrics, /api/v1/status and
/api/v1/capacity on --listen.

The API and /metrics need a bearer token when --api-tokens-file is given (lines
'read TOKEN' or 'operate TOKEN'); without it they are open to anyone who can reach
--listen, and a warning is logged. --tls-cert/--tls-key serve HTTPS. With
--verify-signatures only commits signed by a key of --allowed-signers (SSH) or
--gpg-keyring are applied.

Every flag can also be given as an environment variable (FLEET_<NAME>, e.g.
FLEET_WEBHOOK_SECRET); a flag wins over the environment. Stops cleanly on SIGINT or
SIGTERM.

Examples:
  fleet run --repo https://git.example.com/ml/fleet.git --kubeconfig ~/.kube/fleet
  fleet run --repo ./fleet --poll-interval 5 --listen 127.0.0.1:8080
  fleet run --repo ./fleet --listen 0.0.0.0:8443 --api-tokens-file /etc/aifleet/tokens \
      --tls-cert tls.crt --tls-key tls.key --verify-signatures \
      --allowed-signers /etc/aifleet/allowed_signers
  FLEET_WEBHOOK_SECRET=... fleet run --repo git@github.com:ml/fleet.git --leader-elect \\
      --home-kubeconfig /etc/aifleet/management.kubeconfig \\
      --git-ssh-key /etc/aifleet/git-ssh/ssh-privatekey \\
      --git-known-hosts /etc/aifleet/git-ssh/known_hosts
  fleet run --repo https://github.com/ml/fleet.git --github-app-id 123456 \\
      --github-app-installation-id 7890123 \\
      --github-app-key-file /etc/aifleet/github-app/private-key.pem

Git credentials (one of): --git-token-file (HTTPS token), --git-ssh-key with
--git-known-hosts (an unknown or changed host key is refused), or a GitHub App. Their
files are read again before each fetch: a rotated Secret needs no restart."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the controller (Git -> placement -> clusters)",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from controllers.commands.common import fail

    try:
        settings = from_args(args)
    except ValidationError as e:
        problems = "; ".join(
            f"--{'.'.join(str(x) for x in err['loc']).replace('_', '-')}: {err['msg']}"
            for err in e.errors())
        fail(f"bad settings: {problems}")
    problem = home_problem(settings) or listener_problem(settings) or \
        _tokens_problem(settings) or _git_token_problem(settings) or \
        _tls_problem(settings) or \
        _repo_problem(settings.repo) or \
        _listen_problem(settings.listen) or \
        _ledger_problem(settings)
    if problem:
        fail(problem)
    return serve_until_signalled(settings)


def _git_token_problem(settings: object) -> str:
    """Git credentials that cannot be used are said at start (never a secret)."""
    from controllers.gitcreds import git_auth_problem
    from controllers.settings import Settings

    assert isinstance(settings, Settings)
    return git_auth_problem(settings)


def _tokens_problem(settings: object) -> str:
    """A tokens file that does not parse is said at start (never which line's token)."""
    from controllers.apiauth import ApiAuth, TokensFileError
    from controllers.settings import Settings

    assert isinstance(settings, Settings)
    if settings.api_tokens_file is None:
        return ""
    try:
        ApiAuth.from_file(settings.api_tokens_file)
    except TokensFileError as e:
        return str(e)
    return ""


def _tls_problem(settings: object) -> str:
    """A certificate and key that do not load (or do not match) are said at start."""
    import ssl

    from controllers.server import tls_context
    from controllers.settings import Settings

    assert isinstance(settings, Settings)
    if settings.tls_cert is None or settings.tls_key is None:
        return ""
    try:
        tls_context(str(settings.tls_cert), str(settings.tls_key))
    except (ssl.SSLError, OSError) as e:
        return (f"--tls-cert {settings.tls_cert} / --tls-key {settings.tls_key} cannot be "
                f"used: {getattr(e, 'reason', None) or e.strerror or type(e).__name__}")
    return ""


def _ledger_problem(settings: Settings) -> str:
    """A signing key that cannot be read, or ledger options without --ledger: say it now,
    not as a failed write at the first decision."""
    import os

    if (settings.ledger_signing_key or settings.ledger_anchor) and not settings.ledger:
        return "--ledger-signing-key and --ledger-anchor need --ledger"
    key = settings.ledger_signing_key
    if key and not os.access(key, os.R_OK):
        return f"--ledger-signing-key {key}: no such file, or not readable"
    return ""


def _repo_problem(repo: str) -> str:
    """A local repo that is not there is a typo to say now, not a fetch that fails
    every --poll-interval forever; URLs (and scp-like `host:path`) are fetched."""
    import os

    if "://" in repo and not repo.startswith("file://"):
        return ""
    path = repo.removeprefix("file://")
    if ":" in path.split("/", 1)[0]:  # git@host:org/repo
        return ""
    if not os.path.exists(path):
        return f"--repo {repo}: no such file or folder"
    return ""


def _listen_problem(listen: str) -> str:
    """Whether --listen can be bound now (a port in use is one line at start, not a
    traceback from inside the controller)."""
    import socket

    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        with socket.create_server((host, int(port)),
                                  family=socket.AF_INET6 if ":" in host else socket.AF_INET):
            return ""
    except OSError as e:
        return f"cannot listen on {listen}: {e.strerror or e}"


def serve_until_signalled(settings: object) -> int:
    """Run the manager until SIGINT/SIGTERM; exit 0 on a clean stop."""
    import signal

    import anyio

    from controllers.logs import configure
    from controllers.runtime.manager import Manager
    from controllers.settings import Settings

    assert isinstance(settings, Settings)
    configure(settings.log_level, settings.log_json)
    from controllers.runtime import heaptrim
    heaptrim.limit_arenas()

    async def main() -> None:
        import functools
        import os

        import structlog

        log = structlog.get_logger()
        # The garbage collector tuned for a long-lived heap (issue 22): this process's
        # setting, so made here, not by the Manager (tests run many in one process).
        # AIFLEET_GC_DEFAULTS=1 keeps the interpreter's (to measure against).
        from controllers.runtime import gctune
        settler = None
        if os.environ.get("AIFLEET_GC_DEFAULTS") != "1":
            gctune.tune()
            settler = gctune.Settler()
        manager = Manager(settings, settler=settler)
        async with anyio.create_task_group() as tg:
            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        log.info("controller_stopping", signal=signal.Signals(signum).name)
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(stop_on_signal)
            # glibc's free heap given back every few seconds (controllers.runtime.
            # heaptrim); a process-wide setting, as the collector's above.
            heaptrim.start()  # a daemon thread: ends with the process
            if os.environ.get("AIFLEET_TRACE_BLOCKERS") == "1":  # what blocks the loop
                from controllers.runtime.blockers import Blockers, report
                tg.start_soon(report, Blockers(manager.loop_lag))
            await tg.start(functools.partial(
                manager.run, front=not settings.serve_in_process))
            log.info("controller_started", branch=settings.branch,
                     listen=f"{settings.listen.rpartition(':')[0] or '127.0.0.1'}:"
                            f"{manager.port}", leader_elect=settings.leader_elect)

    from controllers.frontproc import FrontExited

    gone: list[BaseException] = []
    try:
        anyio.run(main)
    except* FrontExited as group:
        gone.extend(group.exceptions)
    if gone:
        # the API is no longer served: exit, so that the supervisor restarts both
        # (docs/controller.md "The front process")
        print(f"fleet run: {gone[0]}: stopped (restart it)", file=sys.stderr)
        return 2
    return 0
