"""Equal parts of parsed documents are one object (`fleet.sharing`, issue 22), and
nothing that reads the spec writes to what is shared."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

from fleet.capacity import declared_capacity
from fleet.diagnostics import FieldLines, SourceRef
from fleet.ids import WorkloadId
from fleet.models import Toleration, Workload
from fleet.placement import place
from fleet.plan_json import plan_to_json
from fleet.render import render_cluster
from fleet.sharing import Sharer
from workloads.loader import SHARER_SLACK, ParseCache, load_entries
from workloads.source import FileEntry

EXAMPLES = Path(__file__).parents[3] / "examples" / "fleet"


def entries(files: dict[str, str]) -> list[FileEntry]:
    out: list[FileEntry] = []
    for path, text in sorted(files.items()):
        data = text.encode()
        out.append(FileEntry(path, path, len(data), f"k{len(out)}", _reader(data)))
    return out


def _reader(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def examples_copied(copies: int) -> dict[str, str]:
    """The example fleet with each Workload file `copies` times, under new names."""
    files: dict[str, str] = {}
    for p in sorted(EXAMPLES.rglob("*.yaml")):
        rel, text = p.relative_to(EXAMPLES).as_posix(), p.read_text()
        if not rel.startswith("workloads/"):
            files[rel] = text
            continue
        for k in range(copies):
            files[rel.replace(f"/{p.stem}.yaml", f"/{p.stem}-{k}.yaml")] = text.replace(
                f"name: {p.stem}\n", f"name: {p.stem}-{k}\n", 1)
    return files


def dump(w: Workload) -> str:
    """Everything a workload says, with what was set (exclude_unset reads it)."""
    return json.dumps([w.model_dump(mode="json", by_alias=True),
                       w.model_dump(mode="json", by_alias=True, exclude_unset=True)],
                      sort_keys=True)


def test_equal_parts_of_different_workloads_are_one_object() -> None:
    spec = load_entries(entries(examples_copied(2)), ParseCache())
    a = spec.workloads[WorkloadId("nlp-team/llama-finetune-0")]
    b = spec.workloads[WorkloadId("nlp-team/llama-finetune-1")]
    assert a is not b and a.metadata is not b.metadata  # a name makes each one unique
    assert a.spec is b.spec  # the rest is spelled the same
    assert a.metadata.labels is b.metadata.labels and a.metadata.labels
    assert a.__pydantic_fields_set__ is b.__pydantic_fields_set__
    src_a = spec.source_of("Workload", a.id)
    src_b = spec.source_of("Workload", b.id)
    assert src_a is not None and src_b is not None
    assert isinstance(src_a.field_lines, FieldLines) and isinstance(src_b.field_lines,
                                                                    FieldLines)
    assert src_a.field_lines.paths is src_b.field_lines.paths
    assert src_a.line_of("spec", "resources", "gpu") == src_b.line_of(
        "spec", "resources", "gpu") > 1


def test_a_file_parsed_later_shares_with_the_cached_ones() -> None:
    files = examples_copied(1)
    cache = ParseCache()
    first = load_entries(entries(files), cache)
    path = "workloads/nlp-team/llama-finetune-0.yaml"
    again = dict(files)
    again[path.replace("-0", "-9")] = files.pop(path).replace(
        "llama-finetune-0", "llama-finetune-9")
    later = load_entries(entries(again), cache)
    old = first.workloads[WorkloadId("nlp-team/llama-finetune-0")]
    new = later.workloads[WorkloadId("nlp-team/llama-finetune-9")]
    assert new.spec is old.spec


def test_equal_values_of_another_type_or_with_other_fields_set_stay_apart() -> None:
    s = Sharer()
    one, true = s.share((1, "x")), s.share((True, "x"))
    assert one is not true and one == true and type(true[0]) is bool
    assert s.share({"a": 1}) is not s.share({"a": True})
    assert s.share({"a": 1, "b": 2}) is not s.share({"b": 2, "a": 1})  # order is output
    assert s.share({"a": 1}) is s.share({"a": 1})
    explicit = s.share(Toleration.model_validate({"key": "k", "operator": "Equal"}))
    default = s.share(Toleration.model_validate({"key": "k"}))
    assert explicit is not default
    assert explicit.model_dump(exclude_unset=True) != default.model_dump(exclude_unset=True)
    assert s.share(Toleration.model_validate({"key": "k"})) is default


def test_planning_and_rendering_write_nothing_that_is_shared() -> None:
    spec = load_entries(entries(examples_copied(3)), ParseCache())
    shared = {id(w.spec) for w in spec.workloads.values()}
    assert len(shared) < len(spec.workloads)  # so a write to one would show in another
    before = {wid: dump(w) for wid, w in spec.workloads.items()}
    sources = pickle.dumps(spec.sources)
    capacity = declared_capacity(spec.clusters)
    plan = place(spec, capacity, commit="c1")
    assert any(p.assignments for p in plan.workloads.values())
    json.dumps(plan_to_json(plan, spec, capacity), sort_keys=True)
    objects = [o for name in sorted(spec.clusters)
               for o in render_cluster(spec, plan, name, "c1")]
    assert objects
    for obj in objects:  # a consumer that edits what it got must not reach the spec
        obj.setdefault("metadata", {}).setdefault("labels", {})["edited"] = "yes"
    for wid, w in spec.workloads.items():
        assert dump(w) == before[wid], wid
    assert pickle.dumps(spec.sources) == sources


def test_field_lines_answer_as_the_dict_they_were_made_from() -> None:
    lines = {("spec",): 4, ("spec", "resources"): 9, ("spec", "placement", "clusters", 1): 14}
    compact = FieldLines.of(lines)
    assert compact == lines and list(compact) == list(lines)
    assert compact == FieldLines.of(dict(lines)) != FieldLines.of({**lines, ("spec",): 5})
    for path in [("spec",), ("spec", "placement", "clusters", 1), ("spec", "x")]:
        assert compact.get(path) == lines.get(path)
    again = pickle.loads(pickle.dumps(compact))
    assert isinstance(again, FieldLines) and again == lines
    src = SourceRef("f.yaml", 2, compact)
    assert src.line_of("spec", "placement", "clusters", 1, "name") == 14
    assert src.line_of("metadata", "name") == 2


def test_the_parse_caches_sharer_starts_afresh_once_it_outgrows_the_files() -> None:
    cache = ParseCache()
    sharer = cache.sharer
    for i in range(SHARER_SLACK):
        sharer.share(10**6 + i)
    cache.retain(set())
    assert cache.sharer is sharer  # within the slack: kept
    sharer.share(10**7)
    cache.retain(set())
    assert cache.sharer is not sharer and len(cache.sharer) == 0


def test_sharing_writes_nothing_it_is_given() -> None:
    s = Sharer()
    first = s.share(Toleration.model_validate({"key": "k", "effect": "NoSchedule"}))
    given = Toleration.model_validate({"key": "k", "effect": "NoSchedule"})
    parts = (dict(given.__dict__), given.__pydantic_fields_set__)
    kept = [id(x) for x in given.__dict__.values()]
    assert s.share(given) is first
    assert (given.__dict__, given.__pydantic_fields_set__) == parts
    assert [id(x) for x in given.__dict__.values()] == kept
    assert given.__pydantic_fields_set__ is parts[1]
