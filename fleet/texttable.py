"""The tables of the product: `table`, what `fleet plan`, `fleet status`, `fleet get`
and every other command print as columns, and `markdown_table`, what `--format
markdown` and the generated docs print. Pure formatting (no terminal detection here:
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


def markdown_cell(text: str) -> str:
    """Free text made safe for one cell: `|` escaped, line breaks as spaces."""
    return text.replace("\n", " ").replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]], *,
                   right: Iterable[int] = ()) -> list[str]:
    """A GitHub-flavoured Markdown table; columns numbered in `right` are right-aligned
    (numbers). Cells are written as given: pass free text through `markdown_cell`."""
    at_right = set(right)
    rule = "".join("---:|" if i in at_right else "---|" for i in range(len(headers)))
    return ["| " + " | ".join(headers) + " |", "|" + rule,
            *("| " + " | ".join(r) + " |" for r in rows)]
