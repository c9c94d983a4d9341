"""The progress line is drawn only for a person at a terminal, rate-limited, and cleared."""

from __future__ import annotations

import io

from controllers.status.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_drawn_on_a_terminal_and_cleared_before_the_output() -> None:
    term = Terminal()
    p = Progress("verifying the ledger", unit="records", stream=term, every=0.0)
    p.update(120_000, 3, 10)
    assert term.getvalue() == "\r\033[Kverifying the ledger: 120,000 records (segment 3/10)..."
    p.clear()
    assert term.getvalue().endswith("\r\033[K")
    p.clear()  # nothing shown since: nothing more written
    assert term.getvalue().count("\r\033[K") == 2


def test_nothing_for_a_pipe_or_a_quick_command() -> None:
    pipe = io.StringIO()  # not a terminal: CI logs and scripts stay clean
    p = Progress("reading", stream=pipe, every=0.0)
    p.update(5)
    p.clear()
    assert pipe.getvalue() == ""
    term = Terminal()
    quick = Progress("reading", stream=term, every=60.0)  # done before the first redraw
    quick.update(5)
    quick.clear()
    assert term.getvalue() == ""
