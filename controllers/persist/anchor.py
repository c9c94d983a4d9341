"""Anchoring the ledger's head outside the fleet repo: `--ledger-anchor URL`.

Every `interval` seconds, when the ledger has moved since the last anchor, the head
of the ledger branch (seq, hash, ledger commit) is appended to the anchor remote
(`workloads.ledger_trust.AnchorWriter`, a worker thread). Someone who can rewrite the
fleet repo's ledger branch cannot change what the anchor already holds (its server
refuses force pushes and deletes), so `fleet ledger verify --anchor URL` detects the
rewrite. A failed push is logged and retried at the next interval; it never blocks
recording. The last anchor is in `/api/v1/status` (`ledger.anchor`) and a metric.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import structlog

from controllers.persist.ledger import Ledger, utc_now
from workloads.errors import WorkloadsError
from workloads.ledger_trust import Anchor, AnchorWriter

log = structlog.get_logger()


class LedgerAnchor:
    def __init__(self, ledger: Ledger, writer: AnchorWriter, *, interval: float = 60.0,
                 clock: Callable[[], str] = utc_now) -> None:
        self.ledger = ledger
        self.writer = writer
        self.interval = interval
        self.clock = clock
        self.last: Anchor | None = None
        self.failures = 0
        self.error = ""

    async def anchor_once(self) -> Anchor | None:
        """Anchor the ledger's head if it moved; the anchor written, or None."""
        if self.ledger.last is None:
            return None
        tip, commit = await anyio.to_thread.run_sync(self.ledger.writer.head)
        if commit is None or (self.last is not None and self.last.seq == tip.seq):
            return None
        anchor = Anchor(tip.seq, tip.hash, commit, self.clock())
        try:
            await anyio.to_thread.run_sync(self.writer.append, anchor)
        except (WorkloadsError, OSError) as e:
            self.failures += 1
            self.error = str(e)[:300]
            log.warning("ledger_anchor_failed", error=self.error, seq=tip.seq)
            return None
        self.last, self.error = anchor, ""
        log.info("ledger_anchored", seq=anchor.seq, hash=anchor.hash,
                 ledger_commit=anchor.ledger_commit)
        return anchor

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.interval)
            await self.anchor_once()
