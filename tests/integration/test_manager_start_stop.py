"""A Manager stopped while it starts leaves nothing behind: no front process, no
in-process server, its port free.

`Manager.run` used to start the API before its `try`, and `manager_io.start_front`
did not stop what of the front it had started: a SIGTERM (the task group cancelled)
or a failure while the controller connected to its freshly spawned front left that
process running, holding the port, and the in-process server's thread with it. Here
a real Manager (no clusters, no repo to fetch: it need not get far) runs in this
process with its front (`fleet run`'s default), stopped at the points named."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from controllers.runtime.manager import Manager
from controllers.settings import Settings
from tests.support import procs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fronts() -> list[procs.Proc]:
    return [p for p in procs.descendants(os.getpid())
            if "controllers.front" in p.cmdline and procs.alive(p)]


def servers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "http-server" and t.is_alive()]


def leftovers(folder: Path) -> list[Path]:
    return list(folder.glob("aifleet-*"))


class Boom(Exception):
    pass


def connect_then(stop: Callable[[], None], reached: list[str]) -> Callable[..., Any]:
    """`asyncio.open_connection`, which the controller calls to reach the front it just
    spawned, with `stop` first (then the real call, where a cancel lands)."""
    real = asyncio.open_connection

    async def connecting(*args: Any, **kwargs: Any) -> Any:
        reached.append("front spawned")
        stop()
        return await real(*args, **kwargs)
    return connecting


def boom() -> None:
    raise Boom("the channel to the front cannot be connected")


@pytest.mark.parametrize("how", ["cancelled-connecting", "failed-connecting",
                                 "failed-after-the-front-started"])
async def test_a_manager_stopped_while_it_starts_leaves_no_front_and_frees_its_port(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    assert not fronts()
    before = len(servers())
    port = free_port()
    m = Manager(Settings(repo=str(tmp_path), state_dir=tmp_path / "state",
                         listen=f"127.0.0.1:{port}"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the inner socket's folder
    reached: list[str] = []

    async def fails() -> None:
        reached.append(f"front serving on {m.port}")
        raise Boom("the home cluster cannot be reached")

    with anyio.CancelScope() as scope:
        if how == "cancelled-connecting":  # SIGTERM: `fleet run` cancels its task group
            monkeypatch.setattr(asyncio, "open_connection",
                                connect_then(scope.cancel, reached))
        elif how == "failed-connecting":
            monkeypatch.setattr(asyncio, "open_connection", connect_then(boom, reached))
        else:  # the front serves; the first task of the group fails
            monkeypatch.setattr(m.home, "connect", fails)
        try:
            await m.run(front=True)
        except* Boom:
            pass
    monkeypatch.undo()
    assert reached in (["front spawned"], [f"front serving on {port}"])
    assert scope.cancel_called == (how == "cancelled-connecting")
    assert not fronts()  # waited for, not left to notice its channel closed some day
    assert len(servers()) == before  # the in-process server (forwarded routes) stopped
    assert procs.port_free(port)
    assert m.status_cache.on_publish is None
    assert not leftovers(tmp_path)  # the inner socket's folder removed
