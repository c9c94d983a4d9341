"""The fast path reads what it accepts exactly as the full reader does, and declines the rest.

`read_simple` is only ever allowed two answers: the full reader's documents (values, the
line each document starts on, the line of every field) or None. These tests compare the
two readers on generated documents, on every example fleet file and on thousands of
mutations of them (the mutations hit quotes, flow collections, comments, indentation,
document markers and special scalars), and pin the shapes it must decline.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from workloads.yamlfast import read_simple
from workloads.yamlio import read_yaml, read_yaml_events

EXAMPLES = sorted((Path(__file__).parents[3] / "examples" / "fleet").rglob("*.yaml"))


def both(data: bytes) -> tuple[object, object]:
    """What `read_yaml` and the full reader make of `data`, comparably."""
    return tuple(([(d.value, d.line, d.lines) for d in f.documents],  # type: ignore[return-value]
                  [(e.message, e.line) for e in f.errors])
                 for f in (read_yaml(data), read_yaml_events(data)))


def agrees(data: bytes) -> bool:
    """True when the fast path read `data` (and matches the full reader); False when it
    declined. Fails the test when it read it differently."""
    fast = read_simple(data)
    if fast is None:
        return False
    full = read_yaml_events(data)
    assert full.errors == [], (data, full.errors)
    assert [(d.value, d.line, d.lines) for d in fast] == \
        [(d.value, d.line, d.lines) for d in full.documents], data
    return True


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
    st.sampled_from(["yes", "No", "on", "~", "null", "0x1f", "0o17", "1_000", ".inf", "-.5",
                     "1e3", "+1", "=", "a b", "a:b", "-x", "x#y", "1:20", "y", "n", "é"]),
)
keys = st.one_of(st.from_regex(r"[a-z_][a-z0-9./-]{0,6}", fullmatch=True),
                 st.text(max_size=5), st.integers())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=24,
)
# Fleet-like documents: mostly what the fast path reads, so that it is compared often.
words = st.from_regex(r"[a-z][a-z0-9.-]{0,8}", fullmatch=True)
simple_keys = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_./-]{0,8}", fullmatch=True)
simple_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), words,
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(simple_keys, inner, max_size=4),
    max_leaves=24,
)
documents = (st.dictionaries(simple_keys, simple_values, min_size=1, max_size=6)
             | st.dictionaries(keys, values, min_size=1, max_size=5))


@settings(max_examples=300, deadline=None)
@given(documents, st.sampled_from([None, False]),
       st.sampled_from([2, 4]), st.booleans())
def test_generated_documents_read_alike(value: dict[object, object], flow: bool | None,
                                        indent: int, explicit: bool) -> None:
    text = yaml.safe_dump(value, default_flow_style=flow, indent=indent,
                          explicit_start=explicit, width=10_000)
    data = ("# a comment\n\n" + text + "---\n" + text).encode()
    agrees(data)
    mine, full = both(data)
    assert mine == full


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_file_takes_the_fast_path(path: Path) -> None:
    assert agrees(path.read_bytes()), f"{path} declined: the fast path misses a common shape"


def test_mutated_files_read_alike_or_are_declined() -> None:
    tokens = [b"'", b'"', b"\\", b",", b"{", b"}", b"[", b"]", b":", b"#", b" ", b"-", b"?",
              b"%", b"@", b"&", b"*", b"!", b"|", b">", b"~", b"1", b"yes", b"null", b"0x1",
              b"2024-01-01", b"<<", b"''", b": ", b" #", b"\n", b"\n  ", b"- ", b"---\n",
              b"...\n", b"[a, 'b']", b'{x: "y"}', b".inf", b"on", b"  ", b"\n- ", b"a: b\n",
              b"\t", b"\r", "é".encode()]
    rng = random.Random(20261123)
    samples = [p.read_bytes() for p in EXAMPLES]
    read = 0
    for _ in range(4000):
        s = bytearray(rng.choice(samples))
        for _ in range(rng.randint(1, 3)):
            op, pos = rng.random(), rng.randrange(len(s) + 1)
            if op < 0.6:
                s[pos:pos] = rng.choice(tokens)
            elif op < 0.85:
                del s[pos:pos + rng.randint(1, 4)]
            else:
                j = rng.randrange(len(s) + 1)
                s[pos:pos] = s[j:j + rng.randint(1, 20)]
        read += agrees(bytes(s))
    assert read > 500  # most mutations keep the simple shape: they were compared


def test_fields_and_documents_have_their_lines() -> None:
    src = (b"# header\n\nkind: Workload\nspec:\n  gpus:\n  - {flavour: h100, count: 8}\n"
           b"  - [a, 'b']\n  env: {A: \"1\"}  # comment\n  empty:\n---\n---\nb: [x, {y: 1}]\n")
    assert agrees(src)
    first, second = read_simple(src) or []
    assert first.line == 3 and second.line == 11
    assert first.lines[("spec", "gpus", 0)] == 6
    assert first.lines[("spec", "gpus", 1, 1)] == 7
    assert first.value["spec"]["empty"] is None
    assert second.lines[("b", 1, "y")] == 12


@pytest.mark.parametrize("src", [
    b"a: 1\na: 2\n",                   # duplicate key: the full reader says where
    b"a:\tb\n",                        # tab
    b"a: b\r\n",                       # CR
    "a: é\n".encode(),                 # not ASCII
    b"a: 2024-01-01\n",                # timestamp
    b"a: &x 1\nb: *x\n",               # anchor and alias
    b"a: !!str 1\n",                   # tag
    b"a: |\n  text\n",                 # block scalar
    b'a: "x\\ty"\n',                   # escape
    b"a: 'it''s'\n",                   # quote in single quotes
    b"a: [1,\n  2]\n",                 # multi-line flow
    b"a: b\n  c\n",                    # multi-line scalar
    b"- a\n",                          # a root that is not a mapping
    b"%YAML 1.1\n---\na: 1\n",         # directive
    b"a: 1\n...\n",                    # document end
    b"yes: 1\n",                       # a key that is not a string
    b"<<: {a: 1}\n",                   # merge key
    b"a: [b, ]\n",                     # trailing comma
    b"a: {b: c:d}\n",                  # `:` in a flow scalar
    b"a: b: c\n",                      # a mapping where a scalar is
])
def test_declines_what_it_does_not_read(src: bytes) -> None:
    assert read_simple(src) is None
    mine, full = both(src)
    assert mine == full  # read by the full reader instead
