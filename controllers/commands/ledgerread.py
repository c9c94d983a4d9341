"""Reading the decision ledger from the command line: what `fleet ledger`, `audit` and
`cost` share (commands never import each other: an import-linter contract in
pyproject.toml). A ledger that cannot be opened is one line and exit 2; a broken hash
chain is refused with exit 1 unless `--allow-broken-chain`."""

from __future__ import annotations

import argparse
import gc
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from controllers.commands.common import fail
from fleet.ledger import Break
from workloads.errors import WorkloadsError
from workloads.ledger_store import LEDGER_BRANCH, LedgerReader, fast_bulk_reads


def open_ledger(repo: str, ref: str) -> LedgerReader:
    try:
        reader = LedgerReader(repo, ref)
    except WorkloadsError as e:
        fail(str(e))
    if reader.commit is None:
        fail(f"no ledger at {ref} in {repo} (the controller writes it on its first decision)")
    return reader



def add_window_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("repo", nargs="?", default=".", metavar="REPO",
                   help="the fleet repo holding the ledger branch (default: the current folder)")
    p.add_argument("--ref", default="HEAD",
                   help="the fleet commit whose clusters and workloads are 'now' (default HEAD)")
    p.add_argument("--ledger-ref", default=LEDGER_BRANCH,
                   help=f"the ledger branch or commit (default: {LEDGER_BRANCH})")
    p.add_argument("--from", dest="start", metavar="DATE", type=_date(False),
                   help="only periods running at or after DATE")
    p.add_argument("--to", dest="end", metavar="DATE", type=_date(True),
                   help="only periods running before the end of DATE")
    p.add_argument("--allow-broken-chain", action="store_true",
                   help="report even when the ledger's hash chain is broken (a record "
                        "edited, removed or reordered), under a banner at the top of the "
                        "output naming the first broken record; without it a broken chain "
                        "is refused: nothing on stdout, the break on stderr, exit 1")


def chain_message(broken: Break) -> str:
    """The first broken record, in the words of `fleet ledger verify`."""
    seq = f"seq {broken.seq}" if broken.seq is not None else "seq ?"
    return (f"the ledger's hash chain is broken at record {broken.index + 1} "
            f"({broken.where}: {seq}: {broken.why})")


def chain_banner(broken: Break) -> str:
    """One line for the top of a report made from a broken chain."""
    return (f"WARNING: {chain_message(broken)}; it and every record after it cannot be "
            "trusted; reported anyway (--allow-broken-chain)")


def chain_json(broken: Break | None) -> dict[str, Any] | None:
    """The `chainBroken` field of a JSON report: null when the chain was verified."""
    if broken is None:
        return None
    return {"record": broken.index + 1, "seq": broken.seq, "where": broken.where,
            "why": broken.why, "message": chain_banner(broken)}


def refuse_broken_chain(broken: Break, ledger_ref: str) -> int:
    """Exit 1 without a report: a report from a broken chain would state as fact what
    someone may have written."""
    print(f"fleet: {chain_message(broken)}: refusing to report from ledger {ledger_ref} "
          "(run `fleet ledger verify`; --allow-broken-chain reports anyway, under a "
          "banner)", file=sys.stderr)
    return 1


def _date(is_end: bool) -> Any:
    def parse(value: str) -> str:
        try:
            if len(value) == 10:
                t = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
                if is_end:
                    t += timedelta(days=1)
            else:
                t = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if t.tzinfo is None:
                    raise ValueError("no timezone")
        except ValueError as e:
            raise argparse.ArgumentTypeError(
                f"{value!r} is not a date (YYYY-MM-DD) or an RFC 3339 time with a timezone "
                f"({e})") from e
        return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return parse


def bulk_mode() -> None:
    """A one-shot command about to fold millions of records: no cyclic GC, fast reads.

    The records are plain dicts and lists without cycles; the collector would only
    re-scan them over and over as they are allocated.
    """
    gc.disable()
    fast_bulk_reads()

