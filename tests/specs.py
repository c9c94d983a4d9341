"""The shared JSON schemas (plan, status) other tools rely on.

Read from `../shared/spec/` when it is beside the repo (as on developer machines and
CI), else from the copy vendored in `docs/spec/`; `test_vendored_specs_match_shared`
keeps the copy honest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "spec"
VENDORED = ROOT / "docs" / "spec"


def spec_path(name: str) -> Path:
    shared = SHARED / name
    return shared if shared.exists() else VENDORED / name


def load_schema(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(spec_path(name).read_text())
    return result
