"""A one-line progress count on stderr while a long command reads, for a person at a
terminal: nothing when stderr is a file or a pipe (CI logs and scripts stay clean).

    progress = Progress("verifying the ledger", unit="records")
    reader.verify(progress.update)    # (done, step, steps): redrawn at most 4 times a second
    progress.clear()                                     # before the command's own output
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, what: str, *, unit: str = "", stream: TextIO | None = None,
                 every: float = 0.25) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.what = what
        self.unit = unit
        self.every = every
        self._next = time.monotonic() + every  # quick commands never draw anything
        self._shown = False

    def update(self, done: int, step: int | None = None, steps: int | None = None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        where = f" (segment {step:,}/{steps:,})" if step is not None and steps else ""
        self.stream.write(f"\r\033[K{self.what}: {done:,} {self.unit}{where}...")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False
