"""Secrets and ConfigMaps on their way in (clusters/sim/storage_kinds.py)."""

from __future__ import annotations

import pytest

from clusters.sim.errors import SimError
from clusters.sim.resources import BY_KIND
from clusters.sim.storage_kinds import _base64_error, on_write
from clusters.sim.validation import config_key, path_segment


@pytest.mark.parametrize(("text", "offset"), [
    ("YWRtaW4=", None), ("YWRt\r\naW4=", None), ("", None), ("YQ==", None),
    ("admin", 4),        # an incomplete last quantum: where it starts
    ("My-pass-123", 2),  # the first byte outside the alphabet
    ("YQ", 0), ("YQ=", 3), ("a===", 1), ("YQ==x", 4),
])
def test_base64_offsets_are_gos(text: str, offset: int | None) -> None:
    # encoding/base64 StdEncoding.Decode's CorruptInputError, as the JSON decoder reports.
    assert _base64_error(text) == offset


@pytest.mark.parametrize(("key", "ok"), [
    ("app.properties", True), ("KEY_NAME", True), ("key-name", True), (".env", True),
    ("a b", False), ("a/b", False), (".", False), ("..", False), ("..data", False),
    ("x" * 253, True), ("x" * 254, False),
])
def test_config_keys(key: str, ok: bool) -> None:
    assert (config_key(key) == []) is ok


def test_a_configmap_key_in_both_data_and_binary_data_is_invalid() -> None:
    cm = {"metadata": {"name": "cm"}, "data": {"k": "v"}, "binaryData": {"k": "dg=="}}
    with pytest.raises(SimError) as err:
        on_write(BY_KIND["ConfigMap"], cm, None)
    assert err.value.code == 422
    assert err.value.message == ('ConfigMap "cm" is invalid: data[k]: Invalid value: "k": '
                                 "duplicate of key present in binaryData")


def test_string_data_wins_over_data_and_is_dropped() -> None:
    secret = {"metadata": {"name": "s"}, "data": {"a": "eA==", "b": "eQ=="},
              "stringData": {"a": "z"}}
    on_write(BY_KIND["Secret"], secret, None)
    assert secret == {"metadata": {"name": "s"}, "data": {"a": "eg==", "b": "eQ=="},
                      "type": "Opaque"}


@pytest.mark.parametrize(("name", "errors"), [
    ("system:controller:x", []), ("a.b", []), (".", ["may not be '.'"]),
    ("..", ["may not be '..'"]), ("a/b%c", ["may not contain '/'", "may not contain '%'"]),
])
def test_rbac_names_are_path_segments(name: str, errors: list[str]) -> None:
    assert path_segment(name) == errors
