"""Helpers shared by commands: reading the fleet repo with the usual arguments."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from clusters.namespace import DEFAULT as DEFAULT_NAMESPACE
from fleet.capacity import CapacityFormatError, CapacitySnapshot, declared_capacity
from workloads.errors import WorkloadsError
from workloads.forkmap import Background
from workloads.loader import Snapshot, read_fleet, read_fleet_cached


class CommandFailed(Exception):
    """The command cannot run at all (exit 2); the message is said on stderr."""


_ALIASES = {"md": "markdown"}


def add_format_argument(p: argparse.ArgumentParser, choices: tuple[str, ...],
                        default: str, help: str | None = None) -> None:
    """`-o/--output FORMAT` as kubectl and flux spell it, `--format` kept as an alias;
    `md` and `markdown` are one format everywhere. Wherever `json` is a choice, `yaml`
    is one too: the same document (`write_doc`)."""
    if "json" in choices and "yaml" not in choices:
        at = choices.index("json") + 1
        choices = (*choices[:at], "yaml", *choices[at:])
        if help is not None:
            help += "; yaml: the json document as YAML"

    def fmt(value: str) -> str:
        v = _ALIASES.get(value.lower(), value.lower())
        if v not in choices:
            raise argparse.ArgumentTypeError(
                f"unknown format {value!r}: one of {', '.join(choices)}")
        return v

    p.add_argument("-o", "--output", "--format", dest="format", type=fmt, default=default,
                   choices=choices, metavar="FORMAT",
                   help=help or f"{', '.join(choices)} (default: {default})")


def add_token_argument(p: argparse.ArgumentParser) -> None:
    """`--token-file` for commands that read a controller's API (`--api-tokens-file`)."""
    p.add_argument("--token-file", metavar="FILE",
                   help="file holding the bearer token for the controller's API (default: "
                        "$FLEET_TOKEN, else no token: fine for a controller run without "
                        "--api-tokens-file)")


def auth_headers(args: argparse.Namespace) -> dict[str, str]:
    """The Authorization header from `--token-file` or `$FLEET_TOKEN`; {} without one.
    An unreadable or empty file cannot run (exit 2); the token is never echoed."""
    import os

    path = getattr(args, "token_file", None)
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            fail(f"cannot read --token-file {path}: "
                 f"{getattr(e, 'strerror', None) or type(e).__name__}")
        if not token:
            fail(f"--token-file {path} is empty")
    else:
        token = os.environ.get("FLEET_TOKEN", "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def add_repo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "repo", nargs="?", default=".", metavar="REPO",
        help="the fleet repo: a Git repository, or a folder inside one whose subtree is "
             "the fleet (default: the current folder)",
    )
    p.add_argument("--ref", default="HEAD",
                   help="the branch, tag or commit to read (default: HEAD)")
    p.add_argument("--worktree", action="store_true",
                   help="read the files on disk instead of a commit, for edits not yet "
                        "committed (symlinks are still refused)")
    add_controller_namespace_argument(p)


def add_controller_namespace_argument(p: argparse.ArgumentParser) -> None:
    """`--controller-namespace`: every command that reads the fleet's workloads reads
    them as the controller does, its own namespace refused as a team folder."""
    p.add_argument("--controller-namespace", metavar="NAMESPACE",
                   default=os.environ.get("FLEET_NAMESPACE") or DEFAULT_NAMESPACE,
                   help="the controller's namespace, which no team folder may use, as "
                        "the controller refuses it (default: $FLEET_NAMESPACE, else "
                        f"{DEFAULT_NAMESPACE})")


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Python's cyclic GC off for a bulk read in a one-shot command.

    Reading a repo creates millions of long-lived objects and no garbage cycles; each
    full collection walks them all again for nothing. Long-running processes keep the
    GC on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def controller_namespace_of(args: argparse.Namespace) -> str:
    """`--controller-namespace` (a command without the flag: the default)."""
    return str(getattr(args, "controller_namespace", None) or DEFAULT_NAMESPACE)


def read_snapshot(args: argparse.Namespace, background: Background | None = None
                  ) -> Snapshot:
    """The fleet the command reads: files on disk (`--worktree`), or a commit through
    the parse cache (written by `background` when given).

    A folder that does not exist, or a tree with no fleet file at all, cannot be
    checked: that is an error (exit 2), never a clean "0 files, 0 errors"."""
    if args.worktree and not Path(args.repo).is_dir():
        raise CommandFailed(f"{args.repo}: no such folder")
    try:
        with no_gc():
            if args.worktree:
                snap = read_fleet(args.repo, args.ref, worktree=True, parallel=True,
                                  controller_namespace=controller_namespace_of(args))
            else:
                snap = read_fleet_cached(args.repo, args.ref, parallel=True,
                                         background=background,
                                         controller_namespace=controller_namespace_of(args))
    except WorkloadsError as e:
        hint = "" if args.worktree else " (use --worktree to read files on disk)"
        raise CommandFailed(f"{e}{hint}") from e
    if snap.files == 0:
        where = "on disk" if args.worktree else f"at {args.ref}"
        raise CommandFailed(
            f"{args.repo}: no fleet file {where} (expected clusters/*.yaml, "
            "workloads/<team>/*.yaml or policies/*.yaml): is this the fleet's folder?")
    return snap


def json_text(doc: Any) -> str:
    """The one JSON layout of every command's document: indented by two, keys sorted at
    every depth, UTF-8 text (not \\u-escaped), a newline at the end. Encoded in C: a
    big fleet's plan is megabytes, slow through `json.dumps(indent=2)`'s pure-Python
    encoder."""
    import msgspec

    raw = msgspec.json.encode(doc, order="deterministic")
    return msgspec.json.format(raw, indent=2).decode() + "\n"


def write_json(doc: Any) -> None:
    """`doc` on stdout as `json_text` lays it out."""
    sys.stdout.write(json_text(doc))


def write_yaml(doc: Any) -> None:
    """`doc` as YAML on stdout: the JSON document of the same command, keys sorted
    (PyYAML's safe dumper, its C version when built; block style, UTF-8 text)."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    yaml.dump(doc, sys.stdout, Dumper=dumper, sort_keys=True, default_flow_style=False,
              allow_unicode=True)


def write_doc(doc: Any, fmt: str) -> None:
    """A command's document in `-o json` (`write_json`) or `-o yaml` (`write_yaml`)."""
    if fmt == "yaml":
        write_yaml(doc)
    else:
        write_json(doc)


def fail(message: str) -> NoReturn:
    """The command cannot run: `cli.main` says `fleet: <message>` on stderr, exit 2."""
    raise CommandFailed(message)


def load_capacity(path: str | None) -> CapacitySnapshot | None:
    """`--capacity FILE`, or None for the declared capacity; exit 2 if unreadable."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return CapacitySnapshot.from_json(json.load(f))
    except OSError as e:
        fail(f"{path}: cannot read: {e.strerror}")
    except (ValueError, CapacityFormatError) as e:
        fail(f"{path}: {e}")


def read_planning_inputs(args: argparse.Namespace, background: Background | None = None
                         ) -> tuple[Snapshot, CapacitySnapshot, bool]:
    """The commit to plan and its capacity (`--capacity FILE`, else the declared one);
    the flag says whether the capacity came from a file. Exits 2 on unreadable input."""
    live = load_capacity(args.capacity)
    snap = read_snapshot(args, background)
    capacity = live if live is not None else declared_capacity(snap.spec.clusters)
    return snap, capacity, live is not None
