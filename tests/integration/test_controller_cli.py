"""`fleet run` as a process: settings from flags and environment, ready, SIGTERM stops it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import httpx

from controllers.demo.sandbox import Sandbox, until
from tests.support import procs
from tests.support.controller import sandbox
from tests.support.serving import until_ready

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_help_explains_every_flag_and_its_environment_variable() -> None:
    out = subprocess.run([sys.executable, "-m", "controllers.cli", "run", "--help"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    for flag, env in (("--repo", "FLEET_REPO"), ("--failover-grace", "FLEET_FAILOVER_GRACE"),
                      ("--leader-elect", "FLEET_LEADER_ELECT"), ("--ledger", "FLEET_LEDGER"),
                      ("--webhook-secret", "FLEET_WEBHOOK_SECRET")):
        assert flag in out and env in out


def test_bad_settings_are_named_and_exit_2() -> None:
    r = subprocess.run([sys.executable, "-m", "controllers.cli", "run", "--repo", "x",
                        "--poll-interval", "soon"], capture_output=True, text=True, cwd=ROOT,
                       env={k: v for k, v in os.environ.items() if not k.startswith("FLEET_")})
    assert r.returncode == 2
    assert "--poll-interval" in r.stderr


def test_leader_elect_without_a_home_refuses_to_start_in_one_line() -> None:
    # It used to pick the first member cluster by name for the Lease, silently: losing
    # that one member then stopped every replica.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    r = subprocess.run([sys.executable, "-m", "controllers.cli", "run", "--repo", "x",
                        "--leader-elect"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert "--home-kubeconfig" in r.stderr and "--leader-cluster" in r.stderr
    out = subprocess.run([sys.executable, "-m", "controllers.cli", "run", "--help"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    for flag, env_name in (("--home-kubeconfig", "FLEET_HOME_KUBECONFIG"),
                           ("--home-context", "FLEET_HOME_CONTEXT")):
        assert flag in out and env_name in out


async def spawn_fleet_run(box: Sandbox, tmp_path: Path, port: int, *extra: str,
                          **env_extra: str) -> tuple[anyio.abc.Process, Path]:
    """`fleet run` on the sandbox (repo and kubeconfig from the environment, with
    `env_extra`; `extra` flags), listening on `port`, just spawned: (the process, its
    log)."""
    env = {**os.environ, "FLEET_REPO": str(box.repo.path),
           "FLEET_KUBECONFIG": str(box.kubeconfig), **env_extra}
    log_path = tmp_path / "controller.log"
    with log_path.open("wb") as log:
        proc = await anyio.open_process(
            [sys.executable, "-m", "controllers.cli", "run", "--kubeconfig",
             str(box.kubeconfig), "--state-dir", str(tmp_path / "state"), "--listen",
             f"127.0.0.1:{port}", "--poll-interval", "1", "--log-json", "true", *extra],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    return proc, log_path


async def start_fleet_run(box: Sandbox, tmp_path: Path, *extra: str
                          ) -> tuple[anyio.abc.Process, int, Path]:
    """`fleet run` on the sandbox (`spawn_fleet_run`), until /readyz says 200: (the
    process, its port, its log)."""
    port = free_port()
    proc, log_path = await spawn_fleet_run(box, tmp_path, port, *extra)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            await until_ready(c, proc, log_path, 30)
    except BaseException:
        proc.kill()
        raise
    return proc, port, log_path


def placement_worker(children: list[procs.Proc], controller: int) -> procs.Proc:
    """The controller's placement worker: a child of its forkserver, not its own."""
    [worker] = [p for p in children if p.ppid != controller and "forkserver" in p.cmdline]
    return worker


async def test_fleet_run_gets_ready_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    async with sandbox(tmp_path) as box:
        proc, port, log_path = await start_fleet_run(box, tmp_path)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
                doc = (await c.get("/api/v1/status")).json()
                assert doc["source"]["appliedCommit"] == box.first_commit
            children = procs.descendants(proc.pid)  # placed: its worker runs
            worker = placement_worker(children, proc.pid)
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(15):
                assert await proc.wait() == 0
            assert "controller_stopping" in log_path.read_text()
            assert not procs.alive(worker)  # the stop waited for it
            # its forkserver and resource tracker end as they see it gone (pipe EOF)
            await until(lambda: not procs.still_running(children), 15,
                        what="no process of the controller's left")
        finally:
            if proc.returncode is None:
                proc.kill()


async def test_sigterm_lets_the_leader_lease_go_after_the_last_write(tmp_path: Path) -> None:
    """SIGTERM (a rolling update's stop): the process lets its Lease go before it exits
    -- holder emptied, as client-go's ReleaseOnCancel leaves it -- so the next replica
    need not wait out the 300 s Lease."""
    async with sandbox(tmp_path, home=True) as box:
        proc, _port, log_path = await start_fleet_run(
            box, tmp_path, "--leader-elect", "--home-kubeconfig", str(box.home_kubeconfig),
            "--lease-duration", "300", "--identity", "replica-0")
        home = box.home
        assert home is not None

        def holder() -> str | None:
            leases = home.clusters["home"].objects("Lease")
            return leases[0]["spec"]["holderIdentity"] if leases else None
        try:
            await until(lambda: holder() == "replica-0", 30, what="replica-0 leads")
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(15):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
        [lease] = home.clusters["home"].objects("Lease")
        assert lease["spec"]["holderIdentity"] == ""
        assert lease["spec"]["leaseDurationSeconds"] == 1
        events = [json.loads(line)["event"] for line in log_path.read_text().splitlines()
                  if line.startswith("{")]
        assert events.index("leader_lease_released") > events.index("controller_stopping")


async def test_a_sigkilled_fleet_run_leaves_no_process_behind(tmp_path: Path) -> None:
    """Killed with no chance to clean up (OOM killer, kill -9): its placement worker
    sees its lifeline close and ends, and with it the forkserver and resource tracker.
    They used to stay, orphaned to PID 1, for good."""
    async with sandbox(tmp_path) as box:
        proc, _port, _log = await start_fleet_run(box, tmp_path)
        try:
            children = procs.descendants(proc.pid)
            placement_worker(children, proc.pid)
            assert len(children) >= 3, children  # worker, forkserver, resource tracker
        finally:
            proc.kill()
            await proc.wait()
        await until(lambda: not procs.still_running(children), 15,
                    what="no process of the killed controller's left")


def fronts_with(tmp: Path) -> list[procs.Proc]:
    """Front processes running with TMPDIR=`tmp` (whoever their parent is now: an
    orphan is adopted by PID 1)."""
    mark = f"TMPDIR={tmp}".encode()
    found = []
    for p in procs.everyone():
        if "controllers.front" not in p.cmdline or not procs.alive(p):
            continue
        try:
            environ = Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if mark in environ:
            found.append(p)
    return found


async def test_sigterm_while_fleet_run_starts_leaves_no_front_behind(tmp_path: Path) -> None:
    """SIGTERM while `fleet run` is still starting its front: as soon as the socket of
    its in-process server (the front's forwarded routes) is there, the front being
    spawned or connected to next. It stops cleanly (exit 0), and only once its front
    is gone, the port free. The start used to be outside the stop's cleanup: a front
    spawned by a start cancelled halfway was left running, not waited for
    (tests/integration/test_manager_start_stop.py stops it at each point in turn)."""
    tmp = tmp_path / "tmp"  # where the in-process server's socket is made
    tmp.mkdir()
    async with sandbox(tmp_path) as box:
        port = free_port()
        proc, log_path = await spawn_fleet_run(box, tmp_path, port, TMPDIR=str(tmp))
        try:
            with anyio.fail_after(60):
                while not list(tmp.glob("aifleet-*/api.sock")):
                    assert proc.returncode is None, log_path.read_text()
                    await anyio.sleep(0.002)
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                assert await proc.wait() == 0, log_path.read_text()
            assert "controller_stopping" in log_path.read_text()
            assert not fronts_with(tmp)  # none left running, its parent gone
            assert procs.port_free(port)
            assert not list(tmp.glob("aifleet-*"))  # the inner socket's folder removed
        finally:
            if proc.returncode is None:
                proc.kill()
