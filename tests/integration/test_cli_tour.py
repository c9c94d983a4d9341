"""A scripted tour of the `fleet` CLI, as a new user takes it: every command of the
README's command table (and every command `fleet --help` lists), each with good and with
bad arguments, in a subprocess against the example fleet and a running controller on
simulated clusters. Checks the exit code of each step and that no step ever prints a
traceback.

A command added to the README table or to `fleet --help` without a step here fails
`test_the_tour_covers_every_command`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from controllers.commands import COMMANDS
from controllers.demo.sandbox import until
from tests.support.controller import FAST, SERVE, TRAIN, fast_settings, rolled_out, sandbox

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "fleet")


@dataclass(frozen=True)
class Step:
    args: tuple[str, ...]
    code: int
    says: str = ""
    """Text expected in stdout + stderr."""


def step(code: int, *args: str, says: str = "") -> Step:
    return Step(tuple(args), code, says)


def readme_commands() -> set[str]:
    """The command names the README's command table shows (`fleet NAME ...`)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## Commands", 1)[1].split("\n\n", 2)[1]
    return set(re.findall(r"`fleet ([a-z]+)", table))


def offline_steps(tmp: Path, *, write: bool = True) -> list[Step]:
    """Steps that need no controller: the example fleet read from disk (`write`: the
    foreign kubeconfig they name written into `tmp`)."""
    foreign = tmp / "someone-elses-kubeconfig"
    if write:
        foreign.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    return [
        step(0, "--help"), step(0, "--version", says="fleet "),
        step(2, "--bogus"), step(2, "nosuchcommand"), step(2),
        step(0, "validate", EXAMPLE, "--worktree", says="0 errors"),
        step(2, "validate", "/nonexistent", "--worktree", says="no such folder"),
        step(2, "validate", EXAMPLE, "--worktree", "-o", "toml"),
        step(0, "schema"), step(0, "schema", "Workload"), step(2, "schema", "Nope"),
        step(0, "plan", EXAMPLE, "--worktree"),
        step(0, "plan", EXAMPLE, "--worktree", "-o", "md"),
        step(0, "plan", EXAMPLE, "--worktree", "-o", "yaml"),
        step(2, "plan", EXAMPLE, "--worktree", "--capacity", "/nonexistent"),
        step(2, "plan", EXAMPLE, "--worktree", "--base", "main"),
        step(2, "plan", "--verify", "/etc/hostname"),
        step(1, "plan", EXAMPLE, "--worktree", "--detailed-exitcode",
             says="use it with --base and --head"),
        step(0, "render", EXAMPLE, "--worktree", "--cluster", "eu-fra-1",
             says="# Source: eu-fra-1/"),
        step(2, "render", EXAMPLE, "--worktree", "--cluster", "nowhere",
             says="no cluster nowhere"),
        step(2, "render", "/nonexistent", "--worktree", says="no such folder"),
        step(0, "explain", "nlp-team/llama-finetune", EXAMPLE, "--worktree"),
        step(2, "explain", "nope/nope", EXAMPLE, "--worktree", says="no workload nope/nope"),
        step(2, "explain"),
        step(0, "whatif", EXAMPLE, "--worktree", "--drain", "eu-fra-1"),
        step(0, "whatif", EXAMPLE, "--worktree", "--capacity", "h100-80gb=-50%"),
        step(2, "whatif", EXAMPLE, "--worktree", "--drain", "nowhere", says="no cluster"),
        step(0, "whatif", EXAMPLE, "--worktree", says="what if no change"),
        step(2, "whatif", EXAMPLE, "--worktree", "--capacity", "h100-80gb=lots"),
        step(0, "run", "--help", says="FLEET_REPO"),
        step(2, "run", "--repo", "/nonexistent", says="no such file or folder"),
        step(2, "run", "--repo", "/tmp", "--poll-interval", "-5"),
        step(2, "run", "--repo", "/tmp", "--listen", "nope"),
        step(2, "run", "--log-level", "bogus", "--repo", "/tmp"),
        step(0, "demo", "--help"), step(2, "demo", "--bogus"),
        step(0, "sim", "up", "--help"), step(2, "sim"), step(2, "sim", "down"),
        step(2, "sim", "up", EXAMPLE, "--worktree", "--kubeconfig", str(foreign)),
        step(0, "completion", "bash", says="complete -F _fleet fleet"),
        step(0, "completion", "zsh"), step(0, "completion", "fish"),
        step(2, "completion"), step(2, "completion", "tcsh"),
        step(0, "version", says="Client version:"),
        step(2, "version", "--server", "http://127.0.0.1:9", says="no controller version"),
        step(2, "status", "--server", "http://127.0.0.1:9", says="cannot read status"),
        step(2, "status", "--watch", "-1"),
        step(2, "get", "workloads", "--server", "http://127.0.0.1:9"),
        step(2, "get", "clusters", "--live", "--repo", "/nonexistent"),
        step(2, "suspend", SERVE, "--server", "http://127.0.0.1:9"),
        step(2, "wait", SERVE, "--for=synced", "--server", "http://127.0.0.1:9"),
        step(0, "cluster", "--help"), step(2, "cluster", says="give a verb"),
        step(2, "cluster", "add", "x", "--context", "nope", "--kubeconfig", str(foreign),
             says="context 'nope' not found"),
        step(2, "cluster", "list", "--server", "http://127.0.0.1:9"),
    ]


def controller_steps(url: str, repo: str, first: str, plan_json: Path) -> list[Step]:
    """Steps against the running controller and its fleet repo (with a ledger)."""
    return [
        step(0, "status", "--server", url, says="Fleet: 3 clusters"),
        step(0, "status", TRAIN, "--server", url, says=f"{TRAIN}: Placed"),
        step(0, "status", "--server", url, "-o", "yaml"),
        step(2, "status", "--server", url, "--state", "Bogus", says="unknown state"),
        step(2, "status", "--server", url, "--team", "nope", says="no workloads of team"),
        step(2, "status", "nope/nope", "--server", url),
        step(0, "get", "workloads", "--server", url, says=SERVE),
        step(0, "get", "clusters", "-o", "wide", "--server", url, says="LABELS"),
        step(0, "get", "workloads", "-A", "-l", "!nope", "--server", url),
        step(2, "get", "nodes", "--server", url),
        step(2, "get", "workloads", "-l", "a in b", "--server", url),
        step(0, "wait", SERVE, "--for=synced", "--timeout", "60s", "--server", url),
        step(2, "wait", SERVE, "--for=later", "--server", url),
        step(0, "sync", "--server", url), step(0, "sync", SERVE, "--server", url),
        step(2, "sync", "nope/nope", "--server", url, says="no workload nope/nope"),
        step(0, "suspend", SERVE, "--server", url, says="suspended"),
        step(0, "resume", SERVE, "--server", url, says="resumed"),
        step(0, "suspend", "--cluster", "us-east-1", "--server", url),
        step(0, "resume", "--cluster", "us-east-1", "--server", url),
        step(2, "suspend", "--server", url, says="name a WORKLOAD or --cluster"),
        step(2, "resume", "--cluster", "nowhere", "--server", url, says="no cluster nowhere"),
        step(0, "version", "--server", url, says="Controller version:"),
        step(0, "cluster", "list", "--server", url, says="us-east-1"),
        step(0, "plan", repo, "--base", first, "--head", "main", "--detailed-exitcode"),
        step(0, "plan", "--verify", str(plan_json), repo, says="still holds"),
        step(2, "plan", repo, "--base", first, "--head", "nope"),
        step(0, "ledger", "verify", repo), step(0, "ledger", "show", repo, says="Placed"),
        step(0, "ledger", "show", repo, "-o", "yaml"),
        step(0, "ledger", "show", repo, "-o", "wide", says="MANIFESTS"),
        step(2, "ledger", "verify", "/nonexistent"), step(2, "ledger"),
        step(0, "audit", "residency", repo), step(0, "audit", "residency", repo, "-o", "json"),
        step(2, "audit", "residency", repo, "--from", "yesterday"),
        step(0, "cost", repo, "--by", "team"), step(2, "cost", repo, "--by", "colour"),
    ]


def fleet(args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLEET_SERVER", "FLEET_TEAM", "NO_COLOR", "FLEET_DEBUG")}
    return subprocess.run([sys.executable, "-m", "controllers.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, env=env, check=False)


def check(steps: list[Step]) -> list[str]:
    """Every step run; what went wrong, one line per step."""
    wrong = []
    for s in steps:
        r = fleet(s.args)
        out = r.stdout + r.stderr
        if "Traceback" in out:
            wrong.append(f"fleet {' '.join(s.args)}: traceback:\n{r.stderr[-1500:]}")
        elif r.returncode != s.code:
            wrong.append(f"fleet {' '.join(s.args)}: exit {r.returncode}, expected {s.code}: "
                         f"{r.stderr.strip()[-300:]}")
        elif s.says and s.says not in out:
            wrong.append(f"fleet {' '.join(s.args)}: does not say {s.says!r}")
        elif r.returncode == 2 and s.args and s.args[0] not in ("--help",) and \
                len(r.stderr.strip().splitlines()) > 1 and "usage:" not in r.stderr:
            wrong.append(f"fleet {' '.join(s.args)}: more than one line on stderr: "
                         f"{r.stderr.strip()[-300:]}")
    return wrong


def test_the_tour_covers_every_command(tmp_path: Path) -> None:
    toured = {s.args[0] for s in offline_steps(tmp_path)
              + controller_steps("u", "r", "c", tmp_path / "p") if s.args}
    assert readme_commands() <= toured, readme_commands() - toured
    assert set(COMMANDS) <= toured, set(COMMANDS) - toured
    assert readme_commands() >= set(COMMANDS), (
        "commands missing from the README table: "
        + ", ".join(sorted(set(COMMANDS) - readme_commands())))


STEP_BUDGET = 10.0
"""Seconds a step (a `fleet` process: an interpreter started, its imports, its work)
may take under load. The suite's 120 s per test is for one test's own work; a tour
starts some fifty processes one after another, and on a loaded 2-core machine that
alone passed 120 s (a timeout, not a failed step). Its budget grows with its steps."""


def budget(steps: int) -> float:
    return 60.0 + STEP_BUDGET * steps


@pytest.mark.timeout(budget(len(offline_steps(Path("/nonexistent"), write=False))))
def test_tour_without_a_controller(tmp_path: Path) -> None:
    wrong = check(offline_steps(tmp_path))
    assert not wrong, "\n".join(wrong)


@pytest.mark.timeout(budget(len(controller_steps("u", "r", "c", Path("p"))) + 1))
async def test_tour_with_a_running_controller(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box, box.controller(
            fast_settings(box, ledger=True), adapter_options=FAST) as m:
        await rolled_out(m, box)
        repo = str(box.repo.path)

        def ledger_pushed() -> bool:
            from workloads.errors import WorkloadsError
            from workloads.ledger_store import read_ledger

            try:
                return any(r.entry.event == "Applied" for r in read_ledger(box.repo.path))
            except WorkloadsError:
                return False

        await until(ledger_pushed, 15, what="ledger records pushed")
        plan_json = tmp_path / "plan.json"
        saved = await asyncio.to_thread(fleet, ("plan", repo, "--base", box.first_commit,
                                                "--head", "main", "-o", "json"))
        assert saved.returncode == 0, saved.stderr
        json.loads(saved.stdout)
        plan_json.write_text(saved.stdout)
        steps = controller_steps(f"http://127.0.0.1:{m.port}", repo, box.first_commit,
                                 plan_json)
        wrong = await asyncio.to_thread(check, steps)
        assert not wrong, "\n".join(wrong)
