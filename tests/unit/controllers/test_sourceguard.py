"""The source guard's file: round trip, owner-only, and what an unusable one gives."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from controllers.runtime import sourceguard
from controllers.runtime.sourceguard import Guard

A, B = "a" * 40, "b" * 40


def test_the_guard_round_trips_owner_only(tmp_path: Path) -> None:
    sourceguard.save(tmp_path, Guard(A, B))
    assert sourceguard.load(tmp_path) == Guard(A, B)
    assert stat.S_IMODE(os.stat(tmp_path / sourceguard.FILE).st_mode) == 0o600


@pytest.mark.parametrize("text", [
    "", "{", "[]", '{"version": 2, "applied": "' + A + '"}',
    '{"version": 1, "applied": "not a sha"}', '{"version": 1, "applied": 7}',
], ids=["empty", "truncated", "not-an-object", "other-version", "not-a-sha", "not-a-string"])
def test_an_unusable_file_is_ignored(tmp_path: Path, text: str) -> None:
    (tmp_path / sourceguard.FILE).write_text(text)
    assert sourceguard.load(tmp_path) == Guard()


def test_a_missing_file_is_an_empty_guard(tmp_path: Path) -> None:
    assert sourceguard.load(tmp_path) == Guard()
    sourceguard.save(tmp_path, Guard(A, None))
    assert json.loads((tmp_path / sourceguard.FILE).read_text()) == {
        "version": 1, "applied": A, "refused": None}
