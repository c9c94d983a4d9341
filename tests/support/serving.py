"""Waiting for a `fleet run` subprocess to serve: its /readyz answering 200."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.abc
import httpx


def tail(log_path: Path) -> str:
    return log_path.read_text()[-2000:]


async def until_ready(c: httpx.AsyncClient, proc: anyio.abc.Process, log_path: Path,
                      seconds: float) -> None:
    """Poll /readyz until it answers 200; fail with the log's tail if the process ends
    first, and after `seconds`."""
    with anyio.fail_after(seconds):
        while True:
            assert proc.returncode is None, tail(log_path)
            try:
                if (await c.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await anyio.sleep(0.2)
