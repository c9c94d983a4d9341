"""Commit signatures verified as `git verify-commit` does, on real signed commits.

Keys are made in the test (ssh-keygen, gpg), commits by `git commit -S`, read back by
`workloads.signatures.SignatureVerifier` through pygit2; `git verify-commit` itself is
asked too, so our verdict and Git's agree.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pygit2
import pytest

from tests.support.signing import (
    GitWork,
    allowed_signers,
    gpg_key,
    ssh_key,
    stop_gpg_agent,
)
from workloads.signatures import SignatureVerifier


def _bare(tmp: Path) -> Path:
    bare = tmp / "fleet.git"
    repo = pygit2.init_repository(str(bare), bare=True, initial_head="main")
    sig = pygit2.Signature("seed", "seed@example.com")
    tree = repo.TreeBuilder().write()
    repo.create_commit("refs/heads/main", sig, sig, "seed", tree, [])
    return bare


def test_ssh_signatures_verify_like_git(tmp_path: Path) -> None:
    bare = _bare(tmp_path)
    work = GitWork(bare, tmp_path / "work")
    trusted, trusted_pub = ssh_key(tmp_path, "trusted")
    stranger, _ = ssh_key(tmp_path, "stranger")
    allowed = allowed_signers(tmp_path / "allowed_signers", ("admin@example.com", trusted_pub))
    verifier = SignatureVerifier(allowed_signers=allowed)
    repo = pygit2.Repository(str(bare))

    signed = work.commit({"a.txt": "1\n"}, "signed", ssh_key=trusted)
    unsigned = work.commit({"a.txt": "2\n"}, "unsigned")
    other = work.commit({"a.txt": "3\n"}, "signed by a stranger", ssh_key=stranger)

    v = verifier.verify(repo, signed)
    assert (v.ok, v.reason, v.signer) == (True, "Verified", "admin@example.com")
    assert verifier.verify(repo, unsigned).reason == "Unsigned"
    assert verifier.verify(repo, other).reason == "UntrustedKey"
    # Git agrees on all three.
    git = ["-c", f"gpg.ssh.allowedSignersFile={allowed}", "verify-commit"]
    work.git(*git, signed)
    for sha in (unsigned, other):
        with pytest.raises(subprocess.CalledProcessError):
            work.git(*git, sha)


def test_a_signed_commit_changed_after_signing_does_not_verify(tmp_path: Path) -> None:
    bare = _bare(tmp_path)
    work = GitWork(bare, tmp_path / "work")
    key, pub = ssh_key(tmp_path, "trusted")
    allowed = allowed_signers(tmp_path / "allowed_signers", ("admin@example.com", pub))
    signed = work.commit({"a.txt": "1\n"}, "deploy v1", ssh_key=key)
    repo = pygit2.Repository(str(bare))
    # The same signature on another message: what a forger who copies a header makes.
    raw = repo.odb.read(signed)[1].replace(b"deploy v1", b"deploy v2")
    forged = str(repo.odb.write(pygit2.enums.ObjectType.COMMIT, raw))
    v = SignatureVerifier(allowed_signers=allowed).verify(repo, forged)
    assert (v.ok, v.reason) == (False, "BadSignature")


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")
def test_gpg_signatures_verify_against_the_keyring_only(tmp_path: Path) -> None:
    bare = _bare(tmp_path)
    work = GitWork(bare, tmp_path / "work")
    home, other_home = tmp_path / "gnupg", tmp_path / "gnupg-other"
    try:
        fpr, public = gpg_key(home)
        other_fpr, _ = gpg_key(other_home, "Stranger <s@example.com>")
        keyring = tmp_path / "keyring.asc"
        keyring.write_bytes(public)
        signed = work.commit({"a.txt": "1\n"}, "signed", gpg_key=fpr, gnupghome=home)
        other = work.commit({"a.txt": "2\n"}, "stranger", gpg_key=other_fpr,
                            gnupghome=other_home)
        unsigned = work.commit({"a.txt": "3\n"}, "unsigned")
    finally:
        stop_gpg_agent(home)
        stop_gpg_agent(other_home)
    repo = pygit2.Repository(str(bare))
    verifier = SignatureVerifier(gpg_keyring=keyring)
    v = verifier.verify(repo, signed)
    assert (v.ok, v.signer) == (True, fpr)
    assert verifier.verify(repo, other).reason == "UntrustedKey"
    assert verifier.verify(repo, unsigned).reason == "Unsigned"
    # An SSH-only verifier cannot judge an OpenPGP signature: refused, saying why.
    pub = ssh_key(tmp_path, "k")[1]
    ssh_only = SignatureVerifier(allowed_signers=allowed_signers(
        tmp_path / "allowed", ("a@example.com", pub)))
    assert ssh_only.verify(repo, signed).reason == "NoVerifier"


# ---------------------------------------------------------------- the controller

async def test_controller_applies_only_commits_signed_by_an_allowed_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unsigned and stranger-signed heads are never applied (status, ledger and the
    forge say why; the last good commit stays applied); a correctly signed one is."""
    import json

    import httpx
    import respx

    from controllers.demo.faults import workloads_on
    from controllers.demo.sandbox import synced, until
    from tests.fleetdocs import workload
    from tests.support.controller import FAST, condition, fast_settings, sandbox
    from workloads.errors import WorkloadsError
    from workloads.ledger_store import read_ledger

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_do-not-print-this-token")
    extra = "workloads/search-team/extra.yaml"
    extra_doc = workload("extra", "search-team", data_class="public").replace(
        "  replicas: 2\n", "  replicas: 1\n")
    trusted, trusted_pub = ssh_key(tmp_path, "trusted")
    stranger, _ = ssh_key(tmp_path, "stranger")
    allowed = allowed_signers(tmp_path / "allowed_signers", ("admin@example.com", trusted_pub))
    statuses = r"https://api\.github\.com/repos/acme/fleet/statuses/(?P<sha>[0-9a-f]{40})"

    def refusals() -> list[str]:
        try:
            return [r.entry.reason for r in read_ledger(box.repo.path)
                    if r.entry.event == "Refused"]
        except WorkloadsError:
            return []  # no ledger branch yet

    with respx.mock(assert_all_mocked=True) as forge:
        route = forge.post(url__regex=statuses).mock(return_value=httpx.Response(201))

        def posted(sha: str) -> dict[str, tuple[str, str]]:
            return {json.loads(c.request.content)["context"]:
                    (json.loads(c.request.content)["state"],
                     json.loads(c.request.content)["description"])
                    for c in route.calls if str(c.request.url).endswith(sha)}

        async with sandbox(tmp_path) as box:
            assert box.sim is not None
            sim = box.sim
            work = GitWork(box.repo.path, tmp_path / "work")
            good = work.commit({}, "sign the fleet", ssh_key=trusted)
            settings = fast_settings(box, verify_signatures=True, allowed_signers=allowed,
                                     ledger=True, forge="github", forge_repo="acme/fleet")
            async with box.controller(settings, adapter_options=FAST) as m:
                await until(lambda: synced(m.status(), good) == (3, 3), 30,
                            what="the signed commit applied")
                for text, key, reason in ((extra_doc, None, "Unsigned"),
                                          (extra_doc + "\n", stranger, "UntrustedKey")):
                    sha = work.commit({extra: text}, f"{reason} commit", ssh_key=key)
                    m.trigger_fetch()
                    await until(lambda: (condition(m.status(), "SourceUnverified") or {})
                                .get("reason") == reason, 20,  # noqa: B023
                                what=f"{reason} reported")
                    doc = m.status()
                    assert doc["source"]["appliedCommit"] == good
                    assert sha[:12] in condition(doc, "SourceUnverified")["message"]  # type: ignore[index]
                    await until(lambda: any(sha in r for r in refusals()), 20,  # noqa: B023
                                what="a Refused record on the ledger")
                    await until(lambda: len(posted(sha)) == 3, 10,  # noqa: B023
                                what="a failure status per cluster on the refused commit")
                    assert {s for s, _ in posted(sha).values()} == {"failure"}
                    assert all(reason in d for _, d in posted(sha).values())
                    for cluster in sim.clusters:
                        assert "search-team/extra" not in workloads_on(sim, cluster)
                signed = work.commit({extra: extra_doc}, "signed again", ssh_key=trusted)
                m.trigger_fetch()
                await until(lambda: synced(m.status(), signed) == (4, 4), 30,
                            what="the next signed commit applied")
                assert condition(m.status(), "SourceUnverified") is None
                text = m.metrics_text()
            # Pushed while no controller runs: a restart serves the applied (signed)
            # commit, never the unsigned head that deletes a workload.
            work.git("rm", "-q", extra)
            unsigned = work.commit({}, "delete, unsigned")
            async with box.controller(settings, adapter_options=FAST) as again:
                await until(lambda: synced(again.status(), signed) == (4, 4), 30,
                            what="the signed commit served after a restart")
                cond = condition(again.status(), "SourceUnverified")
                assert cond is not None and cond["reason"] == "Unsigned"
                assert unsigned[:12] in cond["message"]
                assert any("search-team/extra" in workloads_on(sim, c) for c in sim.clusters)
    assert 'aifleet_source_commits_refused_total{reason="SourceUnverified"} 2.0' in text
    ledger_refusal = next(r for r in read_ledger(box.repo.path) if r.entry.event == "Refused")
    assert ledger_refusal.entry.commit is None  # the audit never reads an unapplied fleet
    assert ledger_refusal.entry.workload == "*"


@pytest.mark.parametrize(
    ("flags", "problem"),
    [(["--verify-signatures"], "--verify-signatures needs --allowed-signers"),
     (["--allowed-signers", "{tmp}/allowed"], "only read with --verify-signatures"),
     (["--verify-signatures", "--allowed-signers", "{tmp}/missing"], "no such file")],
    ids=["no-keys", "keys-without-flag", "missing-file"])
def test_fleet_run_refuses_a_signature_setup_that_would_check_nothing(
        tmp_path: Path, flags: list[str], problem: str) -> None:
    import sys

    (tmp_path / "allowed").write_text("")
    args = [f.format(tmp=tmp_path) for f in flags]
    out = subprocess.run([sys.executable, "-m", "controllers.cli", "run", "--repo",
                          str(tmp_path), "--listen", "127.0.0.1:0", *args],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and problem in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
