"""The `fleet` command line.

Each command lives in its own module under `controllers/commands/` and exposes
`register(subparsers)`; a command's handler takes the parsed arguments and returns the
process exit code. Conventions every command keeps: 0 clean, 1 the input has problems
(listed), 2 the command could not run at all (said on stderr in one line).
`main` is the one place an error becomes an exit code (`exit_code`); a command says it
cannot run with `common.fail(message)` (or by raising `CommandFailed`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from controllers.commands import COMMANDS

EPILOG = """\
exit codes: 0 clean, 1 problems found in the input (listed), 2 could not run.
Run `fleet COMMAND --help` for the options of a command."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or (`only`) just one command's part: a command started
    does not import the other eleven (pydantic-settings, the ledger store, ...), which
    is a tenth of a second of every `fleet plan` in CI."""
    parser = argparse.ArgumentParser(
        prog="fleet",
        description=(
            "aifleet: place GPU workloads described in a Git fleet repo onto many "
            "Kubernetes clusters, by GPU flavour, data residency (fail closed) and free "
            "capacity."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0,
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if only is not None and name != only:
            continue
        module = importlib.import_module(f"controllers.commands.{name}")
        module.register(sub)
    return parser


class _VersionAction(argparse.Action):
    """`--version`, looked up only when asked: importlib.metadata costs every start."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


def _version() -> str:
    from controllers.version import version

    return version()


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    first = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser(first if first in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    # `plan --detailed-exitcode` gives 2 the meaning "has changes" (as terraform does):
    # there, a command that could not run exits 1, never 2.
    failed = 1 if getattr(args, "detailed_exitcode", False) else 2
    try:
        code: int = args.handler(args)
    except BaseException as e:  # noqa: BLE001 - the one place errors become exit codes
        return exit_code(e, args.command, failed)
    return code


def exit_code(error: BaseException, command: str, failed: int = 2) -> int:
    """The exit code of a command that raised `error`, said on stderr in one line:

    - `CommandFailed` (`common.fail`): the command could not run; its message as it is;
    - `SystemExit(2)` (argparse's own errors, already said): could not run;
    - KeyboardInterrupt: 130; a closed stdout (`fleet plan | head`): 0;
    - anything else is a bug in fleet, not in the input: one line naming it, and the
      traceback before it only with FLEET_DEBUG=1.

    `failed` is "could not run" (2, or 1 under `plan --detailed-exitcode`). An error
    raised inside a task group arrives wrapped in an exception group of one: it is
    judged as itself."""
    from controllers.commands.common import CommandFailed

    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    if isinstance(error, KeyboardInterrupt):
        return 130
    if isinstance(error, BrokenPipeError):
        sys.stderr.close()
        return 0
    if isinstance(error, SystemExit):
        if error.code == 2:
            return failed
        raise error
    if isinstance(error, CommandFailed):
        print(f"fleet: {error}", file=sys.stderr)
        return failed
    if not isinstance(error, Exception):
        raise error
    if os.environ.get("FLEET_DEBUG"):
        traceback.print_exception(error, file=sys.stderr)
    print(f"fleet {command}: could not run: {type(error).__name__}: {error} (this is a bug "
          "in fleet, not in your input; FLEET_DEBUG=1 shows the traceback)", file=sys.stderr)
    return failed


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
