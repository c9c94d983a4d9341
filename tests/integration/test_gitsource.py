"""The controller's view of the fleet repo: fetch, last good commit, force-push refusal."""

from __future__ import annotations

from pathlib import Path

import pygit2

from tests.fleetdocs import base_fleet, workload
from tests.gitrepo import SIGNATURE, GitRepo
from workloads.gitsource import GitSource, _redact


async def test_fetches_new_commits_and_parses_only_what_changed(tmp_path: Path) -> None:
    origin = GitRepo(tmp_path / "origin")
    first = origin.commit(base_fleet())
    src = GitSource(str(origin.path), "main", tmp_path / "state")
    r = await src.poll()
    assert r.snapshot is not None and r.snapshot.commit == first and r.conditions == ()
    assert (await src.poll()).snapshot is None  # nothing new
    misses = src.cache.misses
    second = origin.commit({"workloads/nlp-team/eval.yaml": workload("eval")})
    r = await src.poll()
    assert r.snapshot is not None and r.snapshot.commit == second
    assert src.cache.misses == misses + 1
    assert "nlp-team/eval" in r.snapshot.spec.workloads


async def test_fetch_failure_keeps_the_last_good_commit(tmp_path: Path) -> None:
    origin = GitRepo(tmp_path / "origin")
    first = origin.commit(base_fleet())
    src = GitSource(str(origin.path), "main", tmp_path / "state")
    await src.poll()
    (origin.path / ".git").rename(tmp_path / "moved")  # the remote goes away
    r = await src.poll()
    assert r.snapshot is None
    assert [c.type for c in r.conditions] == ["SourceUnavailable"]
    assert src.last_good is not None and src.last_good.commit == first
    assert first[:12] in r.conditions[0].message


async def test_a_ref_lock_left_by_a_killed_process_does_not_stop_fetching(
        tmp_path: Path) -> None:
    """A controller SIGKILLed while a fetch moved the mirror's ref leaves its lock file;
    the next process (same state dir) fetched nothing new ever after (found by the
    kill -9 test of test_controller_ledger_trust.py failing now and then)."""
    origin = GitRepo(tmp_path / "origin")
    origin.commit(base_fleet())
    await GitSource(str(origin.path), "main", tmp_path / "state").poll()
    lock = tmp_path / "state" / "mirror.git" / "refs" / "remotes" / "origin" / "main.lock"
    lock.write_text("")  # what the kill left
    second = origin.commit({"workloads/nlp-team/eval.yaml": workload("eval")})
    r = await GitSource(str(origin.path), "main", tmp_path / "state").poll()  # restarted
    assert r.conditions == ()
    assert r.snapshot is not None and r.snapshot.commit == second
    assert not lock.exists()


async def test_a_branch_the_repo_does_not_have_is_named_in_the_condition(tmp_path: Path) -> None:
    origin = GitRepo(tmp_path / "origin")
    origin.commit(base_fleet())
    src = GitSource(str(origin.path), "master", tmp_path / "state")
    r = await src.poll()
    assert r.snapshot is None
    assert [c.type for c in r.conditions] == ["SourceUnavailable"]
    message = r.conditions[0].message
    assert "no branch 'master'" in message and "--branch" in message, message
    assert "refs/remotes" not in message  # not libgit2's reference name


async def test_force_push_rollback_is_refused_unless_allowed(tmp_path: Path) -> None:
    origin = GitRepo(tmp_path / "origin")
    first = origin.commit(base_fleet())
    second = origin.commit({"workloads/nlp-team/eval.yaml": workload("eval")})
    src = GitSource(str(origin.path), "main", tmp_path / "state")
    await src.poll()
    src.applied = second
    # Force-push: main goes back to a new commit on top of `first`, not after `second`.
    repo = origin.repo
    tree = repo[first].peel(pygit2.Tree)
    rewritten = repo.create_commit(None, SIGNATURE, SIGNATURE, "rewrite", tree.id,
                                   [pygit2.Oid(hex=first)])
    repo.references["refs/heads/main"].set_target(rewritten)
    r = await src.poll()
    assert r.snapshot is None
    assert [c.type for c in r.conditions] == ["NonFastForwardRefused"]
    src.allow_non_fast_forward = True
    r = await src.poll()
    assert r.snapshot is not None and r.snapshot.commit == str(rewritten)


def test_credentials_in_urls_are_never_logged() -> None:
    assert _redact("https://bot:ghp_secret@github.com/org/fleet.git") == \
        "https://***@github.com/org/fleet.git"
    assert _redact("/srv/fleet") == "/srv/fleet"
