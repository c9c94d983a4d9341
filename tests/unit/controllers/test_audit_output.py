"""The audit's JSON writer: byte for byte what `json.dump(indent=2, sort_keys=True)` writes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controllers.commands.audit import write_json


def period(workload: str, **extra: Any) -> dict[str, Any]:
    return {"workload": workload, "cluster": "eu-fra-1", "jurisdiction": "DE",
            "dataClass": "eu-personal", "from": "2026-11-23T10:00:00Z", "to": None,
            "commit": "c" * 40, "flavour": "h100-80gb", "gpus": 16, "allowed": True,
            "why": "", "placed": True, **extra}


@pytest.mark.parametrize("periods", [
    [period("nlp/a"), period("nlp/b", allowed=False, why="eu-personal does not allow US")],
    [period("bio/daten", why="Daten\u2028bleiben \"hier\" | \\ \x85 \U0001f512 \t"),
     period("nlp/c", gpus=10**30, dataClass=None, flavour=None, placed=False, score=0.1)],
    [],
], ids=["plain", "escapes-unicode-big-int-extra-key", "no-periods"])
def test_write_json_matches_the_standard_library(capsys: pytest.CaptureFixture[str],
                                                 periods: list[dict[str, Any]]) -> None:
    doc = {"ledger": {"records": 2, "headSeq": 2, "headHash": "h", "commit": "x"},
           "window": {"from": None, "to": None}, "violations": 1, "periods": periods,
           "findings": [{"kind": "UnknownCommit", "message": "m\u00e9"}], "notCrossChecked": []}
    expected = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    write_json(doc)
    assert capsys.readouterr().out == expected
    assert doc["periods"] == periods  # left as it was
