"""`fleet schema`: descriptions for editors, shipped copies and docs that stay current.

Through the real CLI in a subprocess: every kind and every field has a description, the
schemas in docs/schema/ and the field tables of docs/fleet-repo.md are what the models
say now, and every example fleet file names (with a yaml-language-server modeline) the
schema of its kind, which its documents follow.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("Cluster", "ResidencyPolicy", "TeamQuota", "Workload", "Guardrails", "Owners")
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)\n")


def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controllers.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def _undescribed(node: dict[str, Any], where: str) -> list[str]:
    out = [] if node.get("description") else [where]
    for name, prop in (node.get("properties") or {}).items():
        if not prop.get("description"):
            out.append(f"{where}.{name}")
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_and_field_has_a_description(kind: str) -> None:
    r = fleet("schema", kind)
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{kind.lower()}.json")
    missing = _undescribed(schema, kind)
    for name, d in schema.get("$defs", {}).items():
        missing += _undescribed(d, name)
    assert missing == []
    assert '"examples"' in r.stdout
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_shipped_schemas_and_the_field_tables_are_up_to_date(tmp_path: Path) -> None:
    out = tmp_path / "schema"
    out.mkdir()
    doc = tmp_path / "fleet-repo.md"
    shutil.copy(ROOT / "docs" / "fleet-repo.md", doc)
    r = fleet("schema", "--write", str(out), "--update-doc", str(doc))
    assert r.returncode == 0, r.stderr
    shipped = ROOT / "docs" / "schema"
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in shipped.iterdir())
    for p in out.iterdir():
        assert p.read_text() == (shipped / p.name).read_text(), \
            f"docs/schema/{p.name} is stale: run `make schema`"
    assert doc.read_text() == (ROOT / "docs" / "fleet-repo.md").read_text(), \
        "the field tables of docs/fleet-repo.md are stale: run `make schema`"
    text = doc.read_text()
    for kind in KINDS:  # every kind documented, with its table
        assert f"<!-- fields: {kind} -->\n\n| field |" in text
    assert "| `spec.placement.dataClass` | string |" in text


def test_every_example_file_names_the_schema_of_its_kind_and_follows_it() -> None:
    files = sorted((ROOT / "examples" / "fleet").rglob("*.yaml"))
    assert files
    for f in files:
        text = f.read_text()
        m = MODELINE.match(text)
        assert m, f"{f}: no yaml-language-server modeline on its first line"
        schema_path = (f.parent / m.group(1)).resolve()
        assert schema_path.parent == ROOT / "docs" / "schema", f
        schema = json.loads(schema_path.read_text())
        for d in yaml.safe_load_all(text):
            assert d["kind"] == schema["title"], f
            jsonschema.validate(d, schema)


def test_schema_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    r = fleet("schema", "--write", str(tmp_path / "nope"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such folder" in r.stderr
    r = fleet("schema", "Bogus")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = fleet("schema", "--help")
    assert r.returncode == 0 and "--update-doc" in r.stdout
