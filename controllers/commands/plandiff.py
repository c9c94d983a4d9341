"""`fleet plan --base REF --head REF` and `fleet plan --verify PLAN.json`: the PR's view.

`fleet plan` (controllers/commands/plan.py) plans one commit. With `--base/--head` it
plans both sides of a change as the controller would after merge (base first, then the
merged head with the base plan as `previous`, for stickiness), compares them
(`fleet.plandiff`), flags protected paths from the *base's* `policies/owners.yaml`, and
prints Markdown for a PR comment, JSON or text. `--post github|gitlab|gitea` also
updates the PR's one sticky comment and sets the `aifleet/plan` commit status on head.

The JSON records what the plan depended on: base and head commits (and refs), the
fleet trees and the capacity digest. `--verify PLAN.json` re-reads them and says
whether the plan still holds, like applying a saved Terraform plan: exit 0 yes, 1 no.

Exit codes: 0 clean, 1 errors or guardrail violations (or a stale plan), 2 could not run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from controllers.commands.common import controller_namespace_of, fail, load_capacity, write_doc
from fleet import planning
from fleet.capacity import CapacitySnapshot
from fleet.ids import WorkloadId
from fleet.owners import flag_paths, infer_team
from fleet.placement.types import Assignment, Plan
from fleet.plandiff import PlanDiff, Renderer, diff_plans
from fleet.plandiff_render import to_json, to_markdown, to_text, verdict
from fleet.spec import FleetSpec
from workloads.changes import Change, read_change_cached
from workloads.errors import WorkloadsError
from workloads.forkmap import Background

if TYPE_CHECKING:
    from fleet.placement.core import Planner

PR_ENV = {"github": ("GITHUB_REPOSITORY", "GITHUB_PR_NUMBER"),
          "gitea": ("GITHUB_REPOSITORY", "GITHUB_PR_NUMBER"),
          "gitlab": ("CI_PROJECT_ID", "CI_MERGE_REQUEST_IID")}

EXAMPLES = """\
Comparing two commits (what a pull request would change):
  fleet plan --base origin/main --head HEAD                 # text
  fleet plan --base main --head feature --format markdown   # the PR comment
  fleet plan --base main --head HEAD --format json > plan.json
  fleet plan --verify plan.json                             # does it still hold?
  fleet plan --base "$BASE_SHA" --head "$HEAD_SHA" --post github --pr 42
      # token from GITHUB_TOKEN / GITLAB_TOKEN / GITEA_TOKEN, never a flag"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The change-related options of `fleet plan`."""
    g = p.add_argument_group("comparing a change (pull request)")
    g.add_argument("--base", metavar="REF", help="the branch or commit merged into")
    g.add_argument("--head", metavar="REF", help="the branch or commit to merge")
    g.add_argument("--team", help="the change author's team (default: inferred when every "
                                  "changed workload file is in one team folder)")
    g.add_argument("--verify", metavar="PLAN.json",
                   help="check that a saved `--format json` plan still holds")
    g.add_argument("--post", choices=("github", "gitlab", "gitea"),
                   help="update the PR's sticky plan comment and set the aifleet/plan "
                        "commit status (token from the environment)")
    g.add_argument("--pr", type=int, help="the PR/MR number (default: $GITHUB_PR_NUMBER, "
                                          "$CI_MERGE_REQUEST_IID)")
    g.add_argument("--forge-repo", metavar="OWNER/NAME",
                   help="the forge repository or GitLab project id (default: "
                        "$GITHUB_REPOSITORY, $CI_PROJECT_ID)")
    g.add_argument("--forge-url", metavar="URL", help="the forge API URL (default: "
                   "$GITHUB_API_URL, $CI_API_V4_URL, $GITEA_API_URL, or the public forge)")
    g.add_argument("--details-url", metavar="URL",
                   help="link for the commit status (e.g. the CI job)")
    g.add_argument("--detailed-exitcode", action="store_true",
                   help="exit 0 when merging changes nothing, 2 when it changes a "
                        "placement, a workload or a cluster's manifests, 1 on any error "
                        "or guardrail violation (and when the command cannot run), as "
                        "`terraform plan -detailed-exitcode` and `kubectl diff`")


def wanted(args: argparse.Namespace) -> bool:
    """Whether `fleet plan` was asked for a change (these options) rather than one commit."""
    return bool(getattr(args, "base", None) or getattr(args, "head", None)
                or getattr(args, "verify", None))


def run(args: argparse.Namespace) -> int:
    # Reading and planning a large fleet allocates millions of small, long-lived, acyclic
    # objects (models, YAML nodes, plan entries); the cyclic GC would rescan them again
    # and again for nothing (half the CPU time at 10,000 workloads). A command is short:
    # collect once at the end instead.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return verify(args) if args.verify else run_diff(args)
    finally:
        if enabled:
            gc.enable()


def run_diff(args: argparse.Namespace) -> int:
    if not (args.base and args.head):
        fail("--base and --head go together (or use --verify PLAN.json)")
    if getattr(args, "worktree", False):
        fail("--worktree cannot be compared: --base and --head are commits")
    if args.post:
        # Before any work or output: a missing token or PR is said once, at once, not
        # after the whole plan was printed.
        _forge_client(args)
    # The caches this run writes are pickled by forked children while it plans (and
    # waited for before it exits): a first run on a big fleet does not pay for them.
    with Background() as background:
        try:
            change = read_change_cached(args.repo, args.base, args.head, parallel=True,
                                        background=background,
                                        controller_namespace=controller_namespace_of(args))
        except WorkloadsError as e:
            if args.post:  # say it on the PR too, or the check just fails without a word
                post_error(args, str(e))
            fail(str(e))
        live = load_capacity(getattr(args, "capacity", None))
        d, source, capacity = plan_change(change, live, args, background)
        fmt = getattr(args, "format", "text")
        if fmt in ("json", "yaml"):
            write_doc(to_json(d, source, capacity), fmt)
        elif fmt == "markdown":
            sys.stdout.write(to_markdown(d))
        else:
            sys.stdout.write(to_text(d))
        sys.stdout.flush()
        if args.post:
            post(args, d)
    if d.failed:
        return 1
    return 2 if args.detailed_exitcode and has_changes(d) else 0


def has_changes(d: PlanDiff) -> bool:
    """Would merging change anything the controller does: a workload added, moved,
    resized or removed, an edited workload (same placement, new manifests), or any
    cluster's rendered manifests."""
    return bool(d.changed or d.manifests)


def capacity_for(spec: FleetSpec, live: CapacitySnapshot | None) -> CapacitySnapshot:
    """`--capacity FILE`, else what the Cluster files declare (`fleet.planning`)."""
    return planning.capacity_for(spec, file=live)[0]


def plan_change(change: Change, live: CapacitySnapshot | None,
                args: argparse.Namespace, background: Background | None = None
                ) -> tuple[PlanDiff, dict[str, Any], CapacitySnapshot]:
    """Plan both sides, compare them, and say what the result depended on."""
    base_spec, head_spec = change.base.spec, change.head.spec
    base_cap = planning.capacity_for(base_spec, file=live)[0]
    head_cap, capacity_source = planning.capacity_for(head_spec, file=live)
    base_plan, planner = base_placement(args.repo, change, base_cap, background,
                                        controller_namespace_of(args))
    # As the controller would after the merge: base's placements as the previous plan,
    # base's planner reused (rebound) when only workloads changed.
    head_plan = planning.plan_change(base_plan, head_spec, head_cap,
                                     commit=change.head_commit, planner=planner,
                                     planner_capacity=base_cap)

    paths = [f.path for f in change.files]
    author = getattr(args, "team", None) or infer_team(paths)
    flags = flag_paths(base_spec.owners, paths, author, {f.path: f.display for f in change.files})
    notes = []
    if change.merged:
        notes.append(f"head does not contain base: planned the merge of head "
                     f"{change.head_commit[:12]} into base {change.base_commit[:12]}")
    if not change.files:
        notes.append("no fleet files change between the merge base and head")
    d = diff_plans(base_spec, base_plan, head_spec, head_plan,
                   render=renderer(),
                   flags=flags, author_team=author, notes=notes)
    source = {
        "baseRef": args.base, "headRef": args.head, "mergeBase": change.merge_base,
        "repoPath": os.fspath(args.repo),
        "capacityDigest": head_cap.digest(),
        "capacitySource": capacity_source,
        "policyVersion": head_plan.policy_version,
        "changedFiles": [{"path": f.display, "status": f.status} for f in change.files],
    }
    return d, source, head_cap


def base_placement(repo_path: str, change: Change, capacity: CapacitySnapshot,
                   background: Background | None = None, controller_namespace: str = ""
                   ) -> tuple[Plan, Planner | None]:
    """The base plan, from the cache in the Git directory when this base, capacity,
    controller namespace (it decides which team folders are refused) and code were
    planned before (every push to a PR plans the same base again); and the planner
    that made it, when it was made now."""
    from fleet.placement import Planner
    from workloads import diskcache
    from workloads.source import open_repository

    repo, prefix = open_repository(repo_path)
    key = f"{change.base_commit}:{prefix}:{controller_namespace}:{capacity.digest()}"
    cached = diskcache.load(repo, "base-plan", key)
    if isinstance(cached, Plan):
        return cached, None
    planner = Planner(change.base.spec, capacity)
    plan = planner.plan({}, commit=change.base_commit)
    if background is not None:
        background.run(lambda: diskcache.save(repo, "base-plan", plan, key))
    else:
        diskcache.save(repo, "base-plan", plan, key)
    return plan, planner


def renderer() -> Renderer:
    """Per workload and cluster, its manifests as deterministic YAML (sorted keys), with
    the side's own commit in the `source-commit` annotation (the diff ignores a change
    of that annotation alone): `fleet.render`, what the controller applies."""
    from fleet.render import render, to_yaml

    def one(spec: FleetSpec, wid: WorkloadId, a: Assignment, commit: str | None) -> str:
        return to_yaml(render(spec.workloads[wid], a, spec.clusters[a.cluster], commit or ""))

    return one


def _target(args: argparse.Namespace) -> tuple[str, int]:
    repo_env, pr_env = PR_ENV[args.post]
    repo = args.forge_repo or os.environ.get(repo_env)
    number = args.pr or _int(os.environ.get(pr_env))
    if not repo or not number:
        fail(f"--post {args.post} needs --forge-repo and --pr (or ${repo_env} and "
             f"${pr_env})")
    return repo, number


def _forge_client(args: argparse.Namespace) -> Any:
    """The forge client --post talks to, its target checked (exit 2 when unusable)."""
    from controllers.forge import ForgeError, client_from_env

    repo, _number = _target(args)
    try:
        return client_from_env(args.post, repo, args.forge_url)
    except ForgeError as e:
        fail(str(e))


def post_error(args: argparse.Namespace, message: str) -> None:
    """The plan could not run (a merge conflict, a missing ref): say so in the sticky
    comment and set aifleet/plan to `error` on head, when head can be resolved."""
    from controllers.forge import MARKER, PLAN_CONTEXT, ForgeError, client_from_env
    from workloads.source import open_repository, resolve_tree

    repo, number = _target(args)
    try:
        git, prefix = open_repository(args.repo)
        head: str | None = resolve_tree(git, args.head, prefix).commit
    except WorkloadsError:
        head = None
    body = (f"{MARKER}\n## aifleet plan: ⚠️ could not run\n\n```\n{message}\n```\n")
    try:
        client = client_from_env(args.post, repo, args.forge_url)
        client.upsert_comment(number, body)
        if head is not None:
            client.set_status(head, "error", PLAN_CONTEXT, "the plan could not run",
                              args.details_url)
    except ForgeError as e:
        print(f"fleet: {e}", file=sys.stderr)


def post(args: argparse.Namespace, d: PlanDiff) -> None:
    """Update the sticky comment and set aifleet/plan on head; exit 2 on a forge error."""
    from controllers.forge import PLAN_CONTEXT, ForgeError, StatusState, client_from_env

    repo, number = _target(args)
    assert d.head_commit is not None
    try:
        client = client_from_env(args.post, repo, args.forge_url)
        result = client.upsert_comment(number, to_markdown(d))
        state: StatusState = "failure" if d.failed else "success"
        text = verdict(d).replace("❌ ", "").replace("✅ ", "")
        client.set_status(d.head_commit, state, PLAN_CONTEXT, text, args.details_url)
    except ForgeError as e:
        fail(str(e))
    what = "created" if result.created else "updated"
    print(f"fleet: plan comment {what} on {repo}#{number}; {PLAN_CONTEXT} set to {state} "
          f"on {d.head_commit[:12]}", file=sys.stderr)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def verify(args: argparse.Namespace) -> int:
    """Whether a saved plan still holds: same base fleet, same head, same capacity."""
    try:
        with open(args.verify, encoding="utf-8") as f:
            doc = json.load(f)
        src = doc["source"]
        recorded = {k: src[k] for k in ("base", "commit", "baseRef", "headRef",
                                         "capacityDigest", "capacitySource")}
    except OSError as e:
        fail(f"{args.verify}: cannot read: {e.strerror}")
    except (ValueError, KeyError, TypeError, AttributeError):
        fail(_not_a_change_plan(args.verify))
    checks: list[tuple[bool, str]] = []
    try:
        change = read_change_cached(args.repo, recorded["baseRef"], recorded["headRef"],
                                    controller_namespace=controller_namespace_of(args))
        base_now, head_now = change.base_commit, change.head_commit
        if base_now == recorded["base"]:
            checks.append((True, f"base {recorded['baseRef']} is still {base_now[:12]}"))
        elif fleet_tree(args.repo, base_now) == fleet_tree(args.repo, recorded["base"]):
            checks.append((True, f"base {recorded['baseRef']} moved to {base_now[:12]} "
                                 f"(was {recorded['base'][:12]}) but no fleet file changed"))
        else:
            checks.append((False, f"base {recorded['baseRef']} moved to {base_now[:12]} "
                                  f"(was {recorded['base'][:12]}) and fleet files changed: "
                                  "plan again"))
        if head_now == recorded["commit"]:
            checks.append((True, f"head {recorded['headRef']} is still {head_now[:12]}"))
        else:
            checks.append((False, f"head {recorded['headRef']} is now {head_now[:12]} "
                                  f"(was {recorded['commit'][:12]}): plan again"))
    except WorkloadsError as e:
        fail(str(e))
    live = load_capacity(getattr(args, "capacity", None))
    if live is None and recorded["capacitySource"] == "file":
        checks.append((False, "the plan used a live capacity snapshot: pass --capacity FILE "
                              "with the current one to check it"))
    else:
        digest = capacity_for(change.head.spec, live).digest()
        same = digest == recorded["capacityDigest"]
        checks.append((same, f"capacity {'unchanged' if same else 'changed'} "
                             f"({digest[:12]}, plan used {recorded['capacityDigest'][:12]})"))
    holds = all(ok for ok, _ in checks)
    fmt = getattr(args, "format", "text")
    if fmt in ("json", "yaml"):
        write_doc({"holds": holds, "checks": [{"ok": ok, "message": m} for ok, m in checks]},
                  fmt)
    else:
        for ok, message in checks:
            print(f"{'ok   ' if ok else 'STALE'} {message}")
        print(f"plan {args.verify}: {'still holds' if holds else 'is stale'}")
    return 0 if holds else 1


def _not_a_change_plan(path: str) -> str:
    """One line for a --verify file that is not a saved change plan: a plain plan (of
    one commit) is named as such, anything else as not a plan."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        plain = isinstance(doc, dict) and doc.get("kind") == "Plan" \
            and "baseRef" not in (doc.get("source") or {})
    except (OSError, ValueError):
        plain = False
    if plain:
        return (f"{path} is a plan of one commit: --verify checks a plan of a change, "
                "written by `fleet plan --base REF --head REF --format json`")
    return (f"{path}: not a plan written by `fleet plan --base REF --head REF "
            "--format json`")


def fleet_tree(repo_path: str, commit: str) -> tuple[str | None, ...]:
    """The tree ids of the fleet folders at `commit`: equal ids, equal fleet files."""
    from workloads.source import FLEET_FOLDERS, open_repository, resolve_tree

    repo, prefix = open_repository(repo_path)
    tree = resolve_tree(repo, commit, prefix).tree
    return tuple(str(tree[f].id) if tree is not None and f in tree else None
                 for f in FLEET_FOLDERS)
