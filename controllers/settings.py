"""Controller settings: from `fleet run` flags, else `FLEET_*` environment, else defaults.

One pydantic-settings model is the single source of names, defaults and help text;
the argparse flags are generated from it, so `fleet run --help` and the environment
variables can never disagree. Secrets are `SecretStr`: never printed, never logged.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fleet.models import DnsLabel


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="forbid")

    repo: str = Field(description="the fleet repo to watch: a path, file://, https or ssh URL")
    branch: str = Field("main", description="the branch to apply")
    subdir: str = Field("", description="the fleet's folder inside the repo, if not the root")
    kubeconfig: str | None = Field(
        None, description="kubeconfig for clusters whose Cluster file names none (default: "
                          "$KUBECONFIG or ~/.kube/config)")
    state_dir: Path = Field(Path(".aifleet"),
                            description="where the controller keeps its Git mirror and "
                                        "what must survive a restart (last plan, clusters "
                                        "being drained): keep it across restarts")
    poll_interval: float = Field(30.0, gt=0, description="seconds between fetches of the repo")
    resync_interval: float = Field(
        60.0, gt=0, description="seconds between full reconciles of each cluster, even without "
                          "events (level-triggered safety net)")
    webhook_secret: SecretStr | None = Field(
        None, description="shared secret of POST /hooks/git (HMAC-SHA256); unset: webhook off")
    listen: str = Field("127.0.0.1:8080", description="host:port of the HTTP server")
    git_token_file: Path | None = Field(
        None, description="file holding an HTTPS token for --repo (e.g. a mounted Secret's "
                          "key): sent with --git-username on every fetch and ledger push, "
                          "never written to the mirror, a URL or a log; read again before "
                          "each fetch (a rotated Secret needs no restart)")
    git_username: str = Field(
        "x-access-token", description="with --git-token-file: the user name sent with "
                                      "the token (your forge documents which it expects)")
    git_ssh_key: Path | None = Field(
        None, description="private key file (OpenSSH or PEM, no passphrase; e.g. a mounted "
                          "Secret's key) for an ssh:// or user@host: --repo; needs "
                          "--git-known-hosts; read again before each fetch")
    git_known_hosts: Path | None = Field(
        None, description="with --git-ssh-key: known_hosts file (lines as `ssh-keyscan "
                          "HOST` prints them) holding the Git server's host key; an unknown "
                          "or changed host key is refused")
    github_app_id: str | None = Field(
        None, description="a GitHub App's id (or client id): fetch and push --repo (https) "
                          "with installation tokens of the App; needs "
                          "--github-app-installation-id and --github-app-key-file")
    github_app_installation_id: str | None = Field(
        None, description="with --github-app-id: the App's installation id on the fleet "
                          "repo's owner")
    github_app_key_file: Path | None = Field(
        None, description="with --github-app-id: the App's private key (PEM), e.g. a "
                          "mounted Secret's key; read again for each new token")
    github_api_url: str = Field(
        "https://api.github.com", description="with --github-app-id: GitHub's API URL "
                                              "(GitHub Enterprise: https://HOST/api/v3)")
    allow_non_fast_forward: bool = Field(
        False, description="accept a new head that is not a descendant of the applied "
                           "commit (a force-push rollback)")
    allow_exec_plugins: bool = Field(
        False, description="allow kubeconfig exec and auth-provider plugins (they run "
                           "commands with the controller's privileges)")
    self_heal: bool = Field(True, description="correct drift (off: only report it)")
    ledger: bool = Field(False, description="record every decision (placements, moves, "
                                            "applies, prunes, drift corrections) on the "
                                            "repo's aifleet/ledger branch (needs push access)")
    ledger_fail_closed: bool = Field(
        True, description="with --ledger: while the ledger cannot take records (its remote "
                          "tip was rewritten under us, or --ledger-max-backlog records wait "
                          "on failing writes), change nothing on any cluster (no apply, "
                          "prune, delete or drift correction) until it is writable again")
    ledger_max_backlog: int = Field(
        100, ge=1, description="with --ledger: records waiting on failing ledger writes from "
                               "which /readyz fails, status says LedgerUnwritable and (fail "
                               "closed) cluster actions stop")
    ledger_signing_key: str | None = Field(
        None, description="with --ledger: an SSH private key file (from a Secret, mode "
                          "0400) that signs every ledger commit as git does for "
                          "gpg.format=ssh; auditors check them with `fleet ledger verify "
                          "--signed-by ALLOWED_SIGNERS` or `git verify-commit`")
    ledger_anchor: str | None = Field(
        None, description="with --ledger: a second Git remote (URL or path, append-only on "
                          "its server) where the ledger's head (seq, hash, commit) is "
                          "pushed every --ledger-anchor-interval, so that a rewritten "
                          "ledger is detected by `fleet ledger verify --anchor URL`")
    ledger_anchor_interval: float = Field(
        60.0, gt=0, description="seconds between anchors of the ledger's head (only when "
                                "it moved)")
    qps: float = Field(50.0, gt=0, description="API requests per second per cluster")
    burst: int = Field(100, ge=1, description="API request burst per cluster")
    placement_process: bool = Field(
        True, description="plan in a worker process, so a big placement never starves "
                          "the event loop (off: in a thread, which shares the GIL)")
    cluster_concurrency: int = Field(4, ge=1,
                                     description="clusters reconciled at the same time")
    unreachable_after: float = Field(
        15.0, gt=0, description="seconds without any answer before a cluster is Unreachable")
    failover_grace: float | None = Field(
        None, ge=0, description="seconds a cluster may be Unreachable before its workloads fail "
                          "over (default: each workload's aifleet.dev/unreachable "
                          "toleration, else 300)")
    max_retire_per_commit: int = Field(
        1, ge=0, description="clusters one commit may retire (remove the Cluster file of); "
                             "more wait for a commit whose message has the trailer "
                             "'Fleet-Allow: retire'")
    max_deletion_fraction: float = Field(
        0.3, ge=0.0, le=1.0,
        description="a commit that would delete more than this share of a cluster's or "
                    "the fleet's live workloads (and more than 3) waits for a commit "
                    "whose message has the trailer 'Fleet-Allow: mass-deletion'")
    leader_elect: bool = Field(False, description="run leader election (one active "
                                                  "controller among replicas)")
    home_kubeconfig: str | None = Field(
        None, description="kubeconfig of the management (home) cluster, separate from the "
                          "members: it holds the leader Lease, the shared last plan and the "
                          "source refusals (default with --home-context: --kubeconfig)")
    home_context: str | None = Field(
        None, description="the management cluster's context (default: the home "
                          "kubeconfig's current context)")
    home_in_cluster: bool = Field(
        False, description="the management (home) cluster is the one this controller runs "
                           "in, reached with its ServiceAccount (KUBERNETES_SERVICE_HOST/"
                           "PORT and the token and CA of --serviceaccount-dir): what the "
                           "Helm chart sets")
    serviceaccount_dir: Path = Field(
        Path("/var/run/secrets/kubernetes.io/serviceaccount"),
        description="with --home-in-cluster: the folder of the mounted ServiceAccount "
                    "token and ca.crt")
    # A namespace name is a DNS-1123 label (k8s.io/apimachinery/pkg/api/validation/
    # generic.go: ValidateNamespaceName = NameIsDNSLabel), refused here rather than by
    # the API server at the first Lease write.
    namespace: DnsLabel | None = Field(
        None, description="the controller's namespace in the home cluster: its leader "
                          "Lease, its state ConfigMaps and the members' credentials "
                          "Secrets (default: with --home-in-cluster the pod's own, from "
                          "the ServiceAccount mount's namespace file; else aifleet-system)")
    leader_cluster: str | None = Field(
        None, description="a member cluster to hold the leader Lease and shared state "
                          "instead of a management cluster (it is then a single point of "
                          "failure); with --leader-elect, this or --home-kubeconfig/"
                          "--home-context is required")
    cluster_secrets: bool = Field(
        False, description="reach each cluster whose Cluster file names no kubeconfig "
                           "through its credentials Secret (named after the cluster, "
                           "labelled aifleet.dev/cluster-credentials=true, made by `fleet "
                           "cluster add`) in --namespace on the management cluster "
                           "(needs --home-kubeconfig/--home-context)")
    identity: str | None = Field(None, description="this replica's name in the Lease")
    lease_duration: float = Field(
        15.0, ge=1.0, description="with --leader-elect: seconds a Lease (the leader's, and "
                                  "each shard's) stays valid without a renew: how long a "
                                  "dead replica's work waits before another takes it "
                                  "over (a replica stopped by SIGTERM or SIGINT lets its "
                                  "Leases go at once)")
    lease_liveness: float | None = Field(
        None, gt=0.0, description="with --leader-elect: the held Leases (the leader's, "
                                  "and with --shards each shard's) are renewed from a "
                                  "thread of their own while the event loop has beaten "
                                  "within this many seconds (default: --lease-duration); "
                                  "a replica whose loop hangs longer stops renewing and "
                                  "loses its leadership and shards")
    shards: int = Field(
        0, ge=0, le=256,
        description="split the clusters into this many shards (rendezvous hashing of the "
                    "cluster name); each replica holds a Lease per shard it owns "
                    "(aifleet-shard-<i> in the home cluster) and writes only to those "
                    "shards' clusters; the leader plans for all. 0: one replica writes "
                    "everywhere. Needs --leader-elect")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug, info, warning or error")
    log_json: bool | None = Field(None, description="JSON logs (default: when not a terminal)")
    forge: Literal["github", "gitlab", "gitea"] | None = Field(
        None, description="post a commit status per cluster (context aifleet/<cluster>) on "
                          "each applied commit to this forge; the token comes from "
                          "GITHUB_TOKEN, GITLAB_TOKEN or GITEA_TOKEN")
    forge_repo: str | None = Field(
        None, description="with --forge: the fleet repo on the forge (owner/name, or the "
                          "GitLab project path or id)")
    forge_url: str | None = Field(
        None, description="with --forge: the forge's API URL (default: the public one; "
                          "required for Gitea)")
    status_failure_after: int = Field(
        3, ge=1, description="with --forge: failed applies of a commit on a cluster before "
                             "its commit status turns from pending to failure (with the "
                             "error)")
    api_tokens_file: Path | None = Field(
        None, description="bearer tokens of the HTTP API, one 'ROLE TOKEN' a line (ROLE "
                          "read: status, capacity, metrics, the page; operate: also POST "
                          "triggers); /healthz, /readyz and /hooks/git stay open. Unset: "
                          "the API is open to anyone who reaches --listen (a warning is "
                          "logged)")
    tls_cert: Path | None = Field(
        None, description="PEM certificate (chain) to serve HTTPS on --listen; with "
                          "--tls-key")
    tls_key: Path | None = Field(None, description="PEM private key of --tls-cert")
    serve_in_process: bool = Field(
        False, description="serve the HTTP API from a thread of the controller's process, "
                           "not from a front process of its own that "
                           "answers /api/v1/status and the webhook however busy the "
                           "controller is")
    verify_signatures: bool = Field(
        False, description="apply only commits signed by a key of --allowed-signers (SSH) "
                           "or --gpg-keyring; an unsigned or wrongly signed head is refused "
                           "and the last good commit stays applied")
    allowed_signers: Path | None = Field(
        None, description="with --verify-signatures: SSH allowed signers file (the format "
                          "of git's gpg.ssh.allowedSignersFile)")
    gpg_keyring: Path | None = Field(
        None, description="with --verify-signatures: GPG keyring (exported public keys) "
                          "whose keys may sign the fleet branch")


    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        _host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:8080, 0.0.0.0:8080, "
                             "[::1]:8080)")
        return value


def home_problem(settings: Settings) -> str:
    """Why these settings cannot start, or "": `--leader-elect` needs a home named
    explicitly (never a member picked silently: losing it would stop every replica)."""
    named = [flag for flag, given in (
        ("--home-in-cluster", settings.home_in_cluster),
        ("--home-kubeconfig/--home-context",
         bool(settings.home_kubeconfig or settings.home_context)),
        ("--leader-cluster", bool(settings.leader_cluster))) if given]
    if settings.leader_elect and not named:
        return ("--leader-elect needs where to hold the Lease: a management cluster "
                "(--home-in-cluster, or --home-kubeconfig and/or --home-context) or, "
                "explicitly, a member (--leader-cluster NAME)")
    if len(named) > 1:
        return f"{' and '.join(named)} all name the home cluster: give one"
    if settings.shards and not settings.leader_elect:
        return ("--shards needs --leader-elect: the leader plans for every shard, and "
                "the home holds the shard Leases")
    if settings.shards and settings.ledger:
        return ("--shards with --ledger is not supported yet: the ledger has one writer, "
                "and each shard's owner applies (run one replica, without --shards)")
    if settings.cluster_secrets and not (settings.home_kubeconfig or settings.home_context
                                         or settings.home_in_cluster):
        return ("--cluster-secrets reads credentials Secrets from the management cluster: "
                "give --home-in-cluster, or --home-kubeconfig and/or --home-context")
    return ""


def listener_problem(settings: Settings) -> str:
    """Why the HTTP and source-trust settings cannot start, or "" (said at start, one
    line, instead of a listener that is silently open or a check that never runs)."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        return "--tls-cert and --tls-key go together: give both or neither"
    for flag, path in (("--tls-cert", settings.tls_cert), ("--tls-key", settings.tls_key),
                       ("--api-tokens-file", settings.api_tokens_file),
                       ("--allowed-signers", settings.allowed_signers),
                       ("--gpg-keyring", settings.gpg_keyring)):
        if path is not None and not path.is_file():
            return f"{flag} {path}: no such file"
    if settings.verify_signatures and not (settings.allowed_signers or settings.gpg_keyring):
        return "--verify-signatures needs --allowed-signers FILE and/or --gpg-keyring FILE"
    if not settings.verify_signatures and (settings.allowed_signers or settings.gpg_keyring):
        return ("--allowed-signers/--gpg-keyring are only read with --verify-signatures: "
                "add it (or drop them)")
    return ""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per setting, `--poll-interval` for `poll_interval`, with its help."""
    for name, info in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = f"FLEET_{name.upper()}"
        default = info.default
        help_text = f"{info.description} [env {env}"
        help_text += "]" if default is None or info.is_required() else f"; default {default}]"
        ann = info.annotation
        if ann is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
        else:
            p.add_argument(flag, dest=name, default=None, metavar=name.upper(),
                           help=help_text)


def from_args(args: argparse.Namespace) -> Settings:
    """Flags given on the command line override the environment."""
    given: dict[str, Any] = {n: getattr(args, n) for n in Settings.model_fields
                             if getattr(args, n, None) is not None}
    return Settings(**given)
