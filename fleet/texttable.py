"""The one text table of the product: what `fleet plan`, `fleet status`, `fleet get`
and every other command print as columns. Pure formatting (no terminal detection here:
the CLI decides about colour, `controllers.status.statusview.table`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

BOLD, RESET = "\x1b[1m", "\x1b[0m"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *,
          bold_header: bool = False) -> list[str]:
    """Left-aligned columns two spaces apart, trailing blanks cut. With `bold_header`,
    escapes wrap the whole header line, so column widths stay those of the text."""
    body = [list(r) for r in rows]
    widths = [len(h) for h in headers]
    for r in body:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    head = fmt.format(*headers).rstrip()
    if bold_header:
        head = f"{BOLD}{head}{RESET}"
    return [head] + [fmt.format(*r).rstrip() for r in body]
