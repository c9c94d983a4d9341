"""Our event-driven YAML reader builds exactly what `yaml.safe_load` builds, safely."""

from __future__ import annotations

import datetime

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from workloads.yamlio import read_yaml

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["yes", "No", "on", "~", "null", "0x1f", "0o17", "1_000", ".inf", "-.5",
                     "2024-01-01", "1e3", "+1", "=", "<<x", "&a", "*b", "!t", "y", "n",
                     "2001-12-14t21:59:43.10-05:00"]),
    st.dates().map(lambda d: d),
)
keys = st.one_of(st.text(min_size=1, max_size=8), st.integers(), st.booleans())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(values, st.sampled_from([None, False, True]))
def test_reader_matches_safe_load(value: object, flow: bool | None) -> None:
    text = yaml.safe_dump(value, default_flow_style=flow, allow_unicode=True)
    docs = read_yaml(text.encode()).documents
    expected = yaml.safe_load(text)
    if expected is None:
        assert docs == []
    else:
        assert [d.value for d in docs] == [expected]


def test_plain_scalars_resolve_like_safe_load() -> None:
    src = (b"a: yes\nb: \"1\"\nc: 1.5\nd: ~\ne: 2024-01-01\nf: hello\ng: .inf\nh: -3\n"
           b"k: '0x1f'\nl: 0x1f\nm: !!str 5\nn: |\n  text\n")
    value = read_yaml(src).documents[0].value
    assert value == yaml.safe_load(src)
    assert value["e"] == datetime.date(2024, 1, 1) and value["m"] == "5" and value["b"] == "1"


def test_every_field_has_its_line() -> None:
    doc = read_yaml(b"a:\n  b:\n    - x\n    - {c: 1}\n").documents[0]
    assert doc.lines[("a",)] == 1
    assert doc.lines[("a", "b")] == 2
    assert doc.lines[("a", "b", 1, "c")] == 4
    assert doc.line_of(("a", "b", 1, "missing")) == 4


def test_a_list_item_that_is_a_mapping_has_the_line_it_starts_on() -> None:
    # An error in the item (a missing field) points here, not at the next item.
    doc = read_yaml(b"a:\n  - b: 1\n    c: 2\n  - d\nz: 1\n").documents[0]
    assert doc.lines[("a", 0)] == 2
    assert doc.lines[("a", 1)] == 4
    assert doc.line_of(("a", 0, "missing")) == 2


def test_explicit_tags_resolve_like_safe_load_and_unknown_ones_are_errors() -> None:
    src = b'a: !!int "5"\nb: !!str 5\nc: !!float "1"\nd: !!binary aGk=\n'
    assert read_yaml(src).documents[0].value == yaml.safe_load(src)
    for bad in (b"a: !foo bar\n", b"a: =\n", b"a: <<\n"):  # safe_load raises on these
        f = read_yaml(bad)
        assert f.documents == [] and len(f.errors) == 1
        assert "could not determine a constructor" in f.errors[0].message
