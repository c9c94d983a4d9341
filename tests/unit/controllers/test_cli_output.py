"""The CLI's output and error contract: one JSON layout (keys sorted) for every command,
`markdown` (alias `md`) wherever Markdown is offered, and `cli.exit_code` as the one
place an error becomes an exit code."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from controllers.cli import build_parser, exit_code, main
from controllers.commands.common import CommandFailed, fail, json_text

ROOT = Path(__file__).resolve().parents[3]


def period(workload: str, **extra: Any) -> dict[str, Any]:
    return {"workload": workload, "cluster": "eu-fra-1", "from": "2026-11-23T10:00:00Z",
            "to": None, "gpus": 16, "allowed": True, "why": "", **extra}


@pytest.mark.parametrize("doc", [
    {"z": 1, "a": {"y": [period("nlp/a"), {"b": 2, "a": 1}], "x": None}},
    {"why": "Daten\u2028bleiben \"hier\" | \\ \x85 \U0001f512 \t", "gpus": 10**30,
     "score": 0.1, "flags": [True, False], "empty": {}, "none": []},
    [],
], ids=["nested", "escapes-unicode-big-int", "empty-list"])
def test_json_text_is_the_standard_library_layout_with_keys_sorted(doc: Any) -> None:
    assert json_text(doc) == json.dumps(doc, indent=2, sort_keys=True,
                                        ensure_ascii=False) + "\n"


@pytest.mark.parametrize("args", [
    ["validate", "examples/fleet", "--worktree", "-o", "json"],
    ["plan", "examples/fleet", "--worktree", "-o", "json"],
    ["explain", "nlp-team/llama-finetune", "examples/fleet", "--worktree", "-o", "json"],
])
def test_every_json_document_is_written_with_sorted_keys(
        args: list[str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(args) in (0, 1)
    out = capsys.readouterr().out
    assert out == json_text(json.loads(out))


def _format_actions() -> list[tuple[str, argparse.Action]]:
    parser = build_parser()
    found: list[tuple[str, argparse.Action]] = []
    todo = [("fleet", parser)]
    while todo:
        name, p = todo.pop()
        for a in p._actions:  # argparse has no public walk over its actions
            if isinstance(a, argparse._SubParsersAction):
                todo.extend((f"{name} {n}", sub) for n, sub in a.choices.items())
            elif a.dest == "format":
                found.append((name, a))
    return found


def test_markdown_is_spelled_markdown_everywhere_and_md_is_its_alias() -> None:
    actions = _format_actions()
    with_markdown = [(n, a) for n, a in actions if "markdown" in (a.choices or ())]
    assert {n for n, _ in with_markdown} >= {"fleet plan", "fleet audit residency"}
    for name, a in actions:
        assert "md" not in (a.choices or ()), name
    for name, a in with_markdown:
        assert a.type is not None and a.type("md") == "markdown", name
        assert a.type("MarkDown") == "markdown", name


def _raised(error: BaseException) -> BaseException:
    """`error` as raised, with its traceback."""
    try:
        raise error
    except BaseException as e:
        return e


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_command_failed_is_its_message_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        fail("repo.git: no such folder")
    except CommandFailed as e:
        assert exit_code(e, "plan") == 2
    assert _one_line(capsys.readouterr().err) == "fleet: repo.git: no such folder"


def test_could_not_run_is_1_under_detailed_exitcode(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(_raised(CommandFailed("x")), "plan", failed=1) == 1
    assert exit_code(_raised(ZeroDivisionError("y")), "plan", failed=1) == 1


def test_an_unexpected_error_is_one_line_exit_2_without_traceback(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEET_DEBUG", raising=False)
    assert exit_code(_raised(KeyError("spec")), "status") == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("fleet status: could not run: KeyError: 'spec' (this is a bug")
    assert "FLEET_DEBUG=1" in line


def test_fleet_debug_shows_the_traceback_then_the_same_line_and_still_exits_2(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_DEBUG", "1")
    assert exit_code(_raised(KeyError("spec")), "status") == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "in _raised" in err  # where it was raised, not where it was caught
    assert err.rstrip().splitlines()[-1].startswith("fleet status: could not run: KeyError")


def test_an_error_from_a_task_group_is_judged_as_itself(
        capsys: pytest.CaptureFixture[str]) -> None:
    async def two_tasks() -> None:
        async def bad() -> None:
            fail("cannot reach the controller at http://127.0.0.1:9")

        async with anyio.create_task_group() as tg:
            tg.start_soon(bad)
            tg.start_soon(anyio.sleep, 10)

    try:
        anyio.run(two_tasks)
    except BaseException as e:
        assert isinstance(e, BaseExceptionGroup)
        assert exit_code(e, "wait") == 2
    assert _one_line(capsys.readouterr().err) == (
        "fleet: cannot reach the controller at http://127.0.0.1:9")


def test_interrupt_and_argparse_exits_keep_their_codes() -> None:
    assert exit_code(_raised(KeyboardInterrupt()), "run") == 130
    assert exit_code(_raised(SystemExit(2)), "run", failed=1) == 1
    with pytest.raises(SystemExit):
        exit_code(_raised(SystemExit(0)), "run")


def test_the_independence_contract_covers_every_command() -> None:
    """`lint-imports` keeps the subcommands from importing each other only for the
    modules its contract names: a new command must be named there too."""
    import tomllib

    from controllers.commands import COMMANDS

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    independent = next(c["modules"] for c in contracts if c["type"] == "independence"
                       and c["modules"][0].startswith("controllers.commands."))
    assert sorted(independent) == sorted(f"controllers.commands.{c}" for c in COMMANDS)
