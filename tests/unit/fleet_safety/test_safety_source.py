"""The source guard's two rules: which base a head must descend from, and refusal."""

from __future__ import annotations

import pytest

from fleet.safety import fast_forward_base, refuse_head

A, B, C = "a" * 40, "b" * 40, "c" * 40


@pytest.mark.parametrize(("local", "shared", "descends", "want"), [
    (None, None, False, None),
    (A, None, False, A),
    (None, B, False, B),
    (A, B, True, B),
    (A, B, False, A),
    (A, A, True, A),
], ids=["nothing-known", "local-only", "shared-only-empty-state-dir", "shared-is-newer",
        "diverged-keeps-local", "same"])
def test_the_base_is_the_newer_of_local_and_shared(local: str | None, shared: str | None,
                                                   descends: bool, want: str | None) -> None:
    assert fast_forward_base(local, shared, shared_descends_local=descends) == want


@pytest.mark.parametrize(("head", "base", "descends", "allow", "refused"), [
    (A, None, False, False, False),
    (A, A, False, False, False),
    (B, A, True, False, False),
    (B, A, False, False, True),
    (B, A, False, True, False),
], ids=["first-commit-ever", "same-commit", "fast-forward", "rollback-refused",
        "rollback-allowed-by-flag"])
def test_a_head_not_descending_from_the_base_is_refused_unless_allowed(
        head: str, base: str | None, descends: bool, allow: bool, refused: bool) -> None:
    why = refuse_head(head, base, descends=descends, allow_non_fast_forward=allow)
    assert bool(why) is refused
    if refused:
        assert head[:12] in why and base is not None and base[:12] in why
        assert "--allow-non-fast-forward" in why
