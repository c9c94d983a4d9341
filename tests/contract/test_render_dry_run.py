"""`fleet render` piped into the real kubectl's `apply --server-side --dry-run=server`.

What `fleet validate` accepts, the API server must accept: otherwise a PR check passes
and the controller fails on every reconcile. For the example fleet and a fleet of edge
cases (`tests/fleets/edge/`: long names, odd quantities, every workload type,
tolerations; each file's first line says which way it goes), every workload is either
refused by `fleet validate` (file:line) or accepted by the server: the rendered output
of each repo goes to every simulated cluster it names, and the workloads `fleet
validate` refuses are rendered anyway (bypassing validation) or patched into the
rendered objects, to show the server refuses them too.

Against the simulator: the namespaces are applied first (a real server's dry-run of an
object in a namespace that does not exist yet is refused: NamespaceLifecycle).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusters.sim import spec_from_cluster, start_sim
from fleet.ids import ClusterName, Flavour
from fleet.models import Workload
from fleet.placement.types import Assignment
from fleet.render import namespace, render
from tests.contract.conftest import sim_only
from tests.contract.test_kubectl import Kubectl, _binary
from tests.contract.test_kubectl import kubectl as kubectl_fixture
from workloads.loader import read_fleet

ROOT = Path(__file__).resolve().parents[2]
kubectl = kubectl_fixture  # the real kubectl on the contract cluster (test_kubectl)
pytestmark = pytest.mark.skipif(_binary() is None, reason="kubectl not found: run "
                                "`make kubectl`")

EDGE = "tests/fleets/edge"
"""The edge-case fleet: each Workload file's first line says whether `fleet validate`
accepts it or refuses it (and the words its error must contain)."""
REFUSED_MARK = "# refused by fleet validate (and by the API server): "


def _edge_files() -> dict[str, str]:
    root = ROOT / EDGE
    return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(root.rglob("*.yaml"))}


EDGE_FILES = _edge_files()
EDGE_CLUSTER = EDGE_FILES["clusters/edge-1.yaml"]
REFUSED = {path: (text, text.splitlines()[0].removeprefix(REFUSED_MARK))
           for path, text in EDGE_FILES.items() if text.startswith(REFUSED_MARK)}
ACCEPTED = {path: text for path, text in EDGE_FILES.items()
            if path.startswith("workloads/") and path not in REFUSED}
LONG_TEAM = "long-team-name-abcdefghij"  # 25 characters
NAME_37 = "n" * 36 + "x"  # team + "." + name = 63: the longest label value there is


def _workload(name: str, team: str = "edge-team", *, wtype: str = "training",
              gpus: int = 8, flavour: str = "h100-80gb") -> str:
    return (
        "apiVersion: aifleet.dev/v1alpha1\nkind: Workload\n"
        f"metadata:\n  name: {name}\n  namespace: {team}\n"
        f"spec:\n  type: {wtype}\n  image: registry.internal/edge:v1\n  replicas: 2\n"
        f"  resources:\n    gpu: {{count: {gpus}, flavours: [{flavour}]}}\n"
        "  placement:\n    dataClass: public\n")


def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controllers.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def by_cluster(text: str) -> dict[str, list[dict[str, Any]]]:
    """`fleet render` output -> per cluster (its `# Source:` comment), the objects."""
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in text.split("---\n"):
        if not doc.strip():
            continue
        source = doc.splitlines()[0].removeprefix("# Source: ")
        out.setdefault(source.split("/", 1)[0], []).append(yaml.safe_load(doc))
    return out


def dump(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=True)


async def dry_run(k: Kubectl, objects: list[dict[str, Any]]) -> tuple[int, str]:
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    if namespaces:
        await k("apply", "--server-side", "-f", "-", stdin=dump(namespaces))
    r = await k("apply", "--server-side", "--dry-run=server", "-f", "-",
                      stdin=dump(objects))
    return r.rc, r.err or r.out


async def accepted_everywhere(repo: str, tmp_path: Path, *flags: str) -> list[str]:
    """Render `repo` and dry-run each cluster's objects on a simulated cluster made
    from its Cluster file; the clusters with their objects (asserted accepted)."""
    snap = read_fleet(ROOT / repo, worktree="--worktree" in flags)
    r = fleet("render", repo, *flags)
    assert r.returncode in (0, 1), r.stderr
    rendered = by_cluster(r.stdout)
    sim = await start_sim([spec_from_cluster(snap.spec.clusters[c]) for c in rendered])
    async with sim:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        for name, objects in sorted(rendered.items()):
            kubectl = Kubectl(kubeconfig, name, tmp_path / f"cache-{name}")
            rc, out = await dry_run(kubectl, objects)
            assert rc == 0, f"{name}: the server refused what fleet validate accepts: {out}"
    return sorted(rendered)


@sim_only  # one simulated cluster per Cluster file of the repo
async def test_fleet_render_of_the_example_fleet_is_accepted_by_every_cluster(
        tmp_path: Path) -> None:
    assert fleet("validate", "examples/fleet", "--worktree").returncode == 0
    clusters = await accepted_everywhere("examples/fleet", tmp_path, "--worktree")
    assert len(clusters) >= 5  # the example fleet places workloads on most clusters


@sim_only
async def test_edge_cases_are_refused_by_validate_or_accepted_by_the_server(
        tmp_path: Path) -> None:
    types = {yaml.safe_load(text)["spec"]["type"] for text in ACCEPTED.values()}
    assert types == {"training", "batch", "inference"}  # every workload type
    v = fleet("validate", EDGE, "--worktree")
    assert v.returncode == 1
    flagged = {line.split(":", 1)[0] for line in v.stdout.splitlines()}
    assert flagged == {f"{EDGE}/{p}" for p in REFUSED}, v.stdout
    for path, (_text, why) in REFUSED.items():
        assert any(line.startswith(f"{EDGE}/{path}:") and why in line
                   for line in v.stdout.splitlines()), (path, v.stdout)
    await accepted_everywhere(EDGE, tmp_path, "--worktree")
    r = fleet("render", EDGE, "--worktree")
    rendered = by_cluster(r.stdout)
    placed = {o["metadata"]["name"] for objects in rendered.values() for o in objects
              if o["kind"] in ("Job", "Deployment")}
    assert placed == {Path(p).stem for p in ACCEPTED}
    # the DRA + Kueue cluster got its shapes: claim templates, queued suspended Jobs
    dra = {(o["kind"], o["metadata"]["name"]) for o in rendered["edge-dra"]}
    assert {("ResourceClaimTemplate", "finetune-full-gpu"), ("Service", "finetune-full"),
            ("Job", "finetune-full"), ("ResourceClaimTemplate", "serve-probes-gpu"),
            ("Deployment", "serve-probes")} <= dra
    job = next(o for o in rendered["edge-dra"] if o["kind"] == "Job")
    assert job["spec"]["suspend"] is True


def _objects(text: str, flavour: str, gpus: int) -> list[dict[str, Any]]:
    """A refused workload rendered anyway (what the controller would send if validate
    let it through), with its Namespace."""
    from fleet.models import Cluster

    w = Workload.model_validate(yaml.safe_load(text))
    c = Cluster.model_validate(yaml.safe_load(EDGE_CLUSTER))
    a = Assignment(ClusterName("edge-1"), Flavour(flavour), 1, gpus)
    return [namespace(w.team), *render(w, a, c, "c1")]


def _patched(path: tuple[str | int, ...], value: Any, wtype: str = "inference"
             ) -> list[dict[str, Any]]:
    """A valid inference workload's objects with one field set to what the model
    refuses (replicas -1, port 70000 ...): the server must refuse it too."""
    objects = _objects(_workload("patched", wtype=wtype, gpus=1, flavour="l40s-48gb"),
                       "l40s-48gb", 1)
    kind = path[0]
    node: Any = next(o for o in objects if o["kind"] == kind)
    for key in path[1:-1]:
        node = node[key]
    node[path[-1]] = value
    return objects


CONTAINER = ("Deployment", "spec", "template", "spec", "containers", 0, "resources")


def _resources(requests: dict[str, Any], limits: dict[str, Any]) -> list[dict[str, Any]]:
    return _patched(CONTAINER, {"requests": requests, "limits": limits})


SERVER_REFUSES = [
    pytest.param(_objects(REFUSED["workloads/edge-team/1st-triage.yaml"][0], "l40s-48gb", 1),
                 id="service-name-not-dns-1035"),
    pytest.param(_objects(REFUSED[f"workloads/{LONG_TEAM}/{NAME_37}y.yaml"][0],
                          "h100-80gb", 1), id="label-value-64"),
    pytest.param(_objects(REFUSED["workloads/edge-team/seconds.yaml"][0], "h100-80gb", 1),
                 id="toleration-seconds-without-noexecute"),
    pytest.param(_objects(REFUSED["workloads/edge-team/bad-value.yaml"][0], "h100-80gb", 1),
                 id="toleration-value-not-a-label-value"),
    pytest.param(_patched(("Deployment", "spec", "replicas"), -1), id="replicas-negative"),
    pytest.param(_patched(("Service", "spec", "ports", 0, "port"), 70000), id="port-70000"),
    pytest.param(_resources({"nvidia.com/gpu": "0.5"}, {"nvidia.com/gpu": "0.5"}),
                 id="gpu-fractional"),
    pytest.param(_resources({"nvidia.com/gpu": "2"}, {"nvidia.com/gpu": "1"}),
                 id="gpu-request-not-limit"),
    pytest.param(_resources({"nvidia.com/gpu": "1", "cpu": "-1"}, {"nvidia.com/gpu": "1"}),
                 id="cpu-negative"),
    pytest.param(_resources({"nvidia.com/gpu": "1", "cpu": "2"},
                            {"nvidia.com/gpu": "1", "cpu": "1"}), id="cpu-request-over-limit"),
]


@pytest.mark.parametrize("objects", SERVER_REFUSES)
async def test_what_validate_refuses_the_server_refuses_too(
        objects: list[dict[str, Any]], kubectl: Kubectl) -> None:
    """The other half: `fleet validate` (or the model) refuses these, and the objects
    they would render to are refused by the API server as well (on the contract
    cluster: the simulator, or FLEET_E2E_KUBECONFIG's)."""
    try:
        rc, out = await dry_run(kubectl, objects)
    finally:  # the Namespaces were applied for real: leave a real cluster as it was
        for o in objects:
            if o["kind"] == "Namespace":
                await kubectl("delete", "namespace", o["metadata"]["name"],
                              "--wait=false", "--ignore-not-found")
    assert rc != 0, f"the server accepted what fleet validate refuses: {out}"
