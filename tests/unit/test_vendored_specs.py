from __future__ import annotations

import pytest

from tests.specs import SHARED, VENDORED


@pytest.mark.parametrize("name", ["plan.schema.json", "status.schema.json"])
def test_vendored_specs_match_shared(name: str) -> None:
    if not (SHARED / name).exists():
        pytest.skip("shared/spec is not beside this checkout; nothing to compare with")
    assert (VENDORED / name).read_text() == (SHARED / name).read_text(), (
        f"docs/spec/{name} is stale: copy it again from shared/spec/")
