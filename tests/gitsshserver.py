"""A Git remote over SSH, for tests: a real SSH server (asyncssh) on 127.0.0.1.

It accepts one client key (public-key auth only) and runs the real `git-upload-pack`
or `git-receive-pack` for the exec request a Git client sends (`git-upload-pack
'/fleet'`), on the bare repositories under `root`. Its host key is made here, so a
test writes the known_hosts line it wants (`known_hosts_line`). Runs its own event
loop in a thread: libgit2 calls it from worker threads, and a test's loop may be busy.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

_COMMANDS = ("git-upload-pack", "git-receive-pack")


@dataclass(frozen=True)
class SshGitServer:
    port: int
    host_key: asyncssh.SSHKey
    users: list[str] = field(default_factory=list)
    """The user name of each connection, as the client sent it."""

    def url(self, name: str, user: str = "git") -> str:
        return f"ssh://{user}@127.0.0.1:{self.port}/{name}"

    def known_hosts_line(self, key: asyncssh.SSHKey | None = None) -> str:
        """The known_hosts entry of this server (or of `key` under its name), as
        `ssh-keyscan -p PORT 127.0.0.1` prints it."""
        public = (key or self.host_key).export_public_key("openssh").decode().split()
        return f"[127.0.0.1]:{self.port} {public[0]} {public[1]}\n"


def new_key(path: Path | None = None) -> asyncssh.SSHKey:
    """An ed25519 key; written in OpenSSH format (0600) when `path` is given."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    if path is not None:
        key.write_private_key(str(path))
        path.chmod(0o600)
        key.write_public_key(str(path) + ".pub")
    return key


def _repo_path(root: Path, path: str) -> str | None:
    """The repository `path` names under `root`, or None outside it."""
    repo = os.path.normpath(os.path.join(root, path.lstrip("/")))
    return repo if repo.startswith(f"{root}{os.sep}") else None


async def _run_git(root: Path, process: asyncssh.SSHServerProcess[bytes]) -> None:
    argv = shlex.split(process.command or "")
    if len(argv) != 2 or argv[0] not in _COMMANDS:
        process.stderr.write(b"only git-upload-pack and git-receive-pack\n")
        process.exit(1)
        return
    repo = _repo_path(root, argv[1])
    if repo is None:
        process.exit(1)
        return
    proc = await asyncio.create_subprocess_exec(
        argv[0], repo, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await process.redirect(stdin=proc.stdin, stdout=proc.stdout, stderr=proc.stderr)
    process.exit(await proc.wait())
    await process.wait_closed()  # the redirects' own clean-up runs here


@contextmanager
def git_ssh_server(root: Path, client_key: asyncssh.SSHKey,
                   host_key: asyncssh.SSHKey | None = None) -> Iterator[SshGitServer]:
    """Serve `root` to the holder of `client_key`; yields the server (port, host key)."""
    host = host_key or new_key()
    users: list[str] = []

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            users.append(username)
            return True  # the key below is checked

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> asyncssh.SSHAcceptor:
        return await asyncssh.create_server(
            Server, "127.0.0.1", 0, server_host_keys=[host],
            authorized_client_keys=asyncssh.import_authorized_keys(
                client_key.export_public_key("openssh").decode()),
            password_auth=False, kbdint_auth=False, encoding=None,
            process_factory=lambda p: _run_git(root, p))

    acceptor = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield SshGitServer(acceptor.sockets[0].getsockname()[1], host, users)
    finally:
        async def stop() -> None:
            acceptor.close()
            await acceptor.wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
