"""The real kubectl v1.35 against the simulated clusters (or a real cluster).

kubectl is a client nobody here wrote: what it accepts is what a real API server
serves. Each test drives one command a user (or the demo) runs and names the API
server behaviour it depends on. The binary comes from `make kubectl`
(`scripts/fetch_kubectl.py`); without it these tests skip with that hint.

The server comes from `conftest.py`: the simulator by default; with
`FLEET_E2E_KUBECONFIG` set, the same tests run against that cluster's current context,
and the few that ask for `sim` (GPU nodes, simulated logs) skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clusters.sim import SimCluster, SimFleet

ROOT = Path(__file__).resolve().parents[2]


def _binary() -> str | None:
    local = ROOT / ".cache" / "bin" / "kubectl"
    return str(local) if local.exists() else shutil.which("kubectl")


pytestmark = pytest.mark.skipif(
    _binary() is None, reason="kubectl not found: run `make kubectl` "
    "(scripts/fetch_kubectl.py installs v1.35 into .cache/bin)")


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def ok(self) -> Result:
        assert self.rc == 0, f"kubectl failed ({self.rc}): {self.err or self.out}"
        return self


@dataclass
class Kubectl:
    """Runs the real binary with its own discovery cache, so no state leaks between
    runs on a reused port."""

    kubeconfig: Path
    context: str | None
    cache: Path
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        base = [str(_binary()), "--kubeconfig", str(self.kubeconfig),
                "--cache-dir", str(self.cache)]
        if self.context:
            base += ["--context", self.context]
        return [*base, *args]

    async def __call__(self, *args: str, stdin: str | None = None, within: float = 60,
                       env: dict[str, str] | None = None) -> Result:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env} if env else None)
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), within)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"kubectl {' '.join(args)} took over {within}s") from None
        return Result(proc.returncode or 0, out.decode(), err.decode())

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        self.procs.append(proc)
        return proc

    async def json(self, *args: str) -> Any:
        return json.loads((await self(*args, "-o", "json")).ok().out)

    async def apply(self, manifest: dict[str, Any], *flags: str) -> Result:
        return await self("apply", "--server-side", *flags, "-f", "-",
                          stdin=json.dumps(manifest))


@pytest.fixture
async def kubectl(kubeconfig: Path, context: str | None,
                  tmp_path: Path) -> AsyncIterator[Kubectl]:
    """kubectl on the server under test (conftest: the simulator, or FLEET_E2E_KUBECONFIG)."""
    k = Kubectl(kubeconfig, context, tmp_path / "kube-cache")
    yield k
    for proc in k.procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def configmap(ns: str, name: str = "settings", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns}, "data": data or {"k": "v"}}


def job(ns: str, name: str = "train", gpus: int = 0) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "busybox:1.36",
                                 "command": ["sh", "-c", "sleep 1"]}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "containers": [container]}}}}


def header(out: str) -> list[str]:
    return out.splitlines()[0].split()


# ------------------------------------------------------------------ get / describe


async def test_get_nodes_prints_the_server_side_table_columns(kubectl: Kubectl) -> None:
    """The server renders `get` as a meta.k8s.io/v1 Table (Accept: as=Table)."""
    out = (await kubectl("get", "nodes")).ok().out
    assert header(out) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    rows = [line.split() for line in out.splitlines()[1:]]
    assert rows and all(r[1].startswith("Ready") for r in rows)
    wide = (await kubectl("get", "nodes", "-o", "wide")).ok().out
    assert header(wide)[:6] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"]


async def test_describe_node_shows_gpu_capacity_and_allocatable(kubectl: Kubectl,
                                                                sim: SimFleet) -> None:
    """Nodes report extended resources (`nvidia.com/gpu`) in capacity and allocatable,
    and describe's pod and event lookups (field selectors on spec.nodeName,
    status.phase, involvedObject.*) are served."""
    nodes = await kubectl.json("get", "nodes")
    gpu_node = next(n for n in nodes["items"]
                    if int(n["status"]["capacity"].get("nvidia.com/gpu", "0")) > 0)
    res = (await kubectl("describe", "node", gpu_node["metadata"]["name"])).ok()
    assert "Capacity:" in res.out and "Allocatable:" in res.out
    assert "nvidia.com/gpu:" in res.out
    assert "nvidia.com/gpu.product=" in res.out
    assert "Error" not in res.err


async def test_get_and_describe_pods_created_for_a_job(kubectl: Kubectl, ns: str) -> None:
    """The Job controller creates pods labelled `job-name`, which get and describe read."""
    (await kubectl.apply(job(ns))).ok()
    pods: dict[str, Any] = {"items": []}
    for _ in range(100):
        pods = await kubectl.json("get", "pods", "-n", ns, "-l", "job-name=train")
        if pods["items"]:
            break
        await asyncio.sleep(0.1)
    assert pods["items"], "no pod created for the job"
    name = pods["items"][0]["metadata"]["name"]
    out = (await kubectl("get", "pods", "-n", ns)).ok().out
    assert header(out) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert name in out
    described = (await kubectl("describe", "pod", name, "-n", ns)).ok().out
    assert f"Name:             {name}" in described or f"Name:         {name}" in described
    assert "Controlled By:  Job/train" in described


async def test_get_jobs_across_namespaces_has_a_namespace_column(kubectl: Kubectl,
                                                                 ns: str) -> None:
    """All-namespace lists (`/apis/batch/v1/jobs`): the demo runs `get jobs -A`."""
    (await kubectl.apply(job(ns, "across"))).ok()
    out = (await kubectl("get", "jobs", "-A")).ok().out
    assert header(out)[:3] == ["NAMESPACE", "NAME", "STATUS"]
    assert any(line.split()[:2] == [ns, "across"] for line in out.splitlines())


async def test_sort_by_and_label_columns_read_objects_embedded_in_the_table(
        kubectl: Kubectl, ns: str) -> None:
    """`--sort-by` asks for `includeObject=Object`: each Table row embeds the whole
    object, with its kind, which kubectl decodes to sort; `-L` reads row labels."""
    for name in ("b-second", "a-first"):
        cm = configmap(ns, name)
        cm["metadata"]["labels"] = {"tier": name[0]}
        (await kubectl.apply(cm)).ok()
    out = (await kubectl("get", "configmaps", "-n", ns, "-l", "tier",
                         "--sort-by=.metadata.name", "-L", "tier")).ok().out
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [(r[0], r[-1]) for r in rows] == [("a-first", "a"), ("b-second", "b")]
    custom = (await kubectl("get", "configmaps", "-n", ns, "-l", "tier",
                            "-o", "custom-columns=N:.metadata.name,K:.data.k")).ok().out
    assert custom.split() == ["N", "K", "a-first", "v", "b-second", "v"]


async def test_explain_renders_the_openapi_v3_schema(kubectl: Kubectl) -> None:
    """`explain` reads /openapi/v3 and the group-version document of the kind."""
    out = (await kubectl("explain", "deployment.spec.template.spec.containers.ports")).ok().out
    assert "KIND:       Deployment" in out
    assert "containerPort\t<integer> -required-" in out


# ------------------------------------------------------------------ apply / diff


async def test_apply_server_side_creates_and_a_repeat_is_a_no_op(kubectl: Kubectl,
                                                                 ns: str) -> None:
    """SSA creates when missing; the same apply again writes nothing (same
    resourceVersion), and managedFields name kubectl's Apply."""
    res = (await kubectl.apply(configmap(ns))).ok()
    assert res.out.strip() == "configmap/settings serverside-applied"
    first = await kubectl.json("get", "configmap", "settings", "-n", ns,
                               "--show-managed-fields")
    (await kubectl.apply(configmap(ns))).ok()
    again = await kubectl.json("get", "configmap", "settings", "-n", ns,
                               "--show-managed-fields")
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    managers = [(m["manager"], m["operation"]) for m in again["metadata"]["managedFields"]]
    assert ("kubectl", "Apply") in managers


async def test_apply_conflicts_after_another_manager_edits_until_forced(kubectl: Kubectl,
                                                                        ns: str) -> None:
    """A field another manager owns with a different value is a 409 conflict naming
    that manager and field; `--force-conflicts` takes ownership."""
    (await kubectl.apply(configmap(ns, k="v"))).ok()
    # A real `kubectl edit`, with a non-interactive editor: a strategic merge patch
    # recorded under the `kubectl-edit` manager, which takes the field.
    edited = await kubectl("edit", "configmap", "settings", "-n", ns,
                           env={"KUBE_EDITOR": "sed -i s/k:\\ v/k:\\ edited/"})
    assert edited.ok().out.strip() == "configmap/settings edited"
    res = await kubectl.apply(configmap(ns, k="mine"))
    assert res.rc != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.k' \
        in res.err
    (await kubectl.apply(configmap(ns, k="mine"), "--force-conflicts")).ok()
    got = await kubectl.json("get", "configmap", "settings", "-n", ns, "--show-managed-fields")
    assert got["data"] == {"k": "mine"}
    owners = {m["manager"] for m in got["metadata"]["managedFields"]
              if "f:k" in m["fieldsV1"].get("f:data", {})}
    assert owners == {"kubectl"}


async def test_apply_rejects_fields_the_schema_does_not_declare(kubectl: Kubectl,
                                                                ns: str) -> None:
    """Server-side field validation: an unknown field is a 400, nothing is written."""
    bad = configmap(ns, "typo")
    bad["dtaa"] = {"x": "1"}
    res = await kubectl.apply(bad)
    assert res.rc != 0 and "BadRequest" in res.err and "dtaa" in res.err
    missing = await kubectl("get", "configmap", "typo", "-n", ns)
    assert missing.rc != 0 and "NotFound" in missing.err


@pytest.mark.parametrize(("validate", "created", "message"), [
    ("strict", False, 'strict decoding error: unknown field "dtaa"'),
    ("warn", True, 'Warning: unknown field "dtaa"'),
    ("ignore", True, ""),
], ids=["strict-rejects", "warn-creates-with-a-warning", "ignore-creates-silently"])
async def test_create_validates_fields_as_the_validate_flag_asks(
        kubectl: Kubectl, ns: str, validate: str, created: bool, message: str) -> None:
    """`fieldValidation=Strict|Warn|Ignore` on POST: a 400, a `Warning` header, or
    nothing; unknown fields are dropped, never stored."""
    bad = configmap(ns, "typo")
    bad["dtaa"] = {"x": "1"}
    res = await kubectl("create", f"--validate={validate}", "-f", "-", stdin=json.dumps(bad))
    assert (res.rc == 0) is created, res.err
    assert message in res.err
    if created:
        got = await kubectl.json("get", "configmap", "typo", "-n", ns)
        assert "dtaa" not in got


def deployment(ns: str, name: str = "web", replicas: Any = 1) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "containers": [{"name": "main", "image": "nginx:1.27"}]}}}}


@pytest.mark.parametrize("flags", [("--server-side",), ()], ids=["server-side", "client-side"])
async def test_apply_of_an_invalid_object_prints_the_servers_causes(
        kubectl: Kubectl, ns: str, flags: tuple[str, ...]) -> None:
    """A 422 Invalid reads as kubectl prints a real server's: `The Deployment "web" is
    invalid:` and then each cause (`<field>: <message>`); nothing is written."""
    res = await kubectl("apply", *flags, "-f", "-", stdin=json.dumps(deployment(ns, replicas=-1)))
    assert res.rc != 0
    assert 'The Deployment "web" is invalid: spec.replicas: Invalid value: -1: must be ' \
        "greater than or equal to 0" in res.err, res.err
    missing = await kubectl("get", "deployment", "web", "-n", ns)
    assert missing.rc != 0 and "NotFound" in missing.err


async def test_apply_lists_every_cause_of_a_refused_object(kubectl: Kubectl, ns: str) -> None:
    """Several causes: kubectl prints one `* <field>: <message>` line each."""
    bad = deployment(ns, replicas=-1)
    bad["metadata"]["labels"] = {"team": "x" * 64}
    res = await kubectl("apply", "-f", "-", stdin=json.dumps(bad))
    assert res.rc != 0 and 'The Deployment "web" is invalid:' in res.err
    assert "* spec.replicas: Invalid value: -1" in res.err, res.err
    assert "* metadata.labels: Invalid value:" in res.err
    assert "must be no more than 63 characters" in res.err


async def test_create_of_a_wrong_type_prints_the_decoders_error(kubectl: Kubectl,
                                                                ns: str) -> None:
    """`replicas: "two"` is the decoder's 400, as kubectl shows it from a real server."""
    res = await kubectl("create", "-f", "-", stdin=json.dumps(deployment(ns, replicas="two")))
    assert res.rc != 0
    assert "Error from server (BadRequest)" in res.err, res.err
    assert "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas " \
        "of type int32" in res.err


async def test_diff_server_side_shows_the_change_without_writing_it(kubectl: Kubectl,
                                                                    ns: str) -> None:
    """`diff --server-side` is an apply with dryRun=All: it returns the would-be object
    and persists nothing; exit 1 means differences, 0 none."""
    (await kubectl.apply(configmap(ns, k="v"))).ok()
    same = await kubectl("diff", "--server-side", "-f", "-", stdin=json.dumps(configmap(ns)))
    assert same.rc == 0, same.err
    changed = await kubectl("diff", "--server-side", "-f", "-",
                            stdin=json.dumps(configmap(ns, k="w")))
    assert changed.rc == 1, changed.err
    assert "-  k: v" in changed.out and "+  k: w" in changed.out
    got = await kubectl.json("get", "configmap", "settings", "-n", ns)
    assert got["data"] == {"k": "v"}


async def test_a_not_ready_node_shows_not_ready(kubectl: Kubectl, cluster: SimCluster) -> None:
    """The node's Ready condition drives the STATUS column (`NotReady`)."""
    name = "contract-1-h100-1"
    cluster.set_node_ready(name, False)
    row = (await kubectl("get", "node", name)).ok().out.splitlines()[1].split()
    assert row[:2] == [name, "NotReady"]
    cluster.set_node_ready(name, True)
    row = (await kubectl("get", "node", name)).ok().out.splitlines()[1].split()
    assert row[:2] == [name, "Ready"]


async def test_a_pod_that_fits_no_node_is_pending_and_describe_says_why(
        kubectl: Kubectl, ns: str, sim: SimFleet) -> None:
    """No node has 16 GPUs: the pod stays Pending with PodScheduled=False,
    reason Unschedulable, and a FailedScheduling event that describe shows."""
    (await kubectl.apply(job(ns, "huge", gpus=16))).ok()
    pods: dict[str, Any] = {"items": []}
    for _ in range(100):
        pods = await kubectl.json("get", "pods", "-n", ns, "-l", "job-name=huge")
        if pods["items"]:
            break
        await asyncio.sleep(0.1)
    name = pods["items"][0]["metadata"]["name"]
    row = (await kubectl("get", "pod", name, "-n", ns)).ok().out.splitlines()[1].split()
    assert row[1:3] == ["0/1", "Pending"]
    described = (await kubectl("describe", "pod", name, "-n", ns)).ok().out
    assert "PodScheduled   False" in described
    assert "nvidia.com/gpu" in described


# ------------------------------------------------------------------ watch / wait


async def _line(stream: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(stream.readline(), 10)).decode()


async def test_get_watch_streams_changes_as_table_rows(kubectl: Kubectl, ns: str) -> None:
    """Watch from the list's resourceVersion: ADDED first, then MODIFIED per change."""
    (await kubectl.apply(configmap(ns, k="v"))).ok()
    proc = await kubectl.start("get", "configmaps", "settings", "-n", ns, "-w",
                               "--output-watch-events")
    assert proc.stdout is not None
    first = await _line(proc.stdout)
    assert first.split()[:2] == ["EVENT", "NAME"]
    assert (await _line(proc.stdout)).split()[:2] == ["ADDED", "settings"]
    (await kubectl.apply(configmap(ns, k="v", extra="1"))).ok()
    assert (await _line(proc.stdout)).split()[:3] == ["MODIFIED", "settings", "2"]


async def test_wait_for_a_job_to_complete(kubectl: Kubectl, ns: str) -> None:
    """The Job controller sets the `Complete` condition; `wait` watches for it; the
    pod ends Succeeded with a `Completed` terminated state."""
    (await kubectl.apply(job(ns, "quick"))).ok()
    res = await kubectl("wait", "--for=condition=complete", "job/quick", "-n", ns,
                        "--timeout=60s", within=90)
    assert res.ok().out.strip() == "job.batch/quick condition met"
    out = (await kubectl("get", "job", "quick", "-n", ns)).ok().out
    assert out.splitlines()[1].split()[1:3] == ["Complete", "1/1"]
    # The pod's STATUS is its container's terminated reason, as kubectl prints it.
    pods = (await kubectl("get", "pods", "-n", ns, "-l", "job-name=quick")).ok().out
    assert pods.splitlines()[1].split()[1:3] == ["0/1", "Completed"]


# ------------------------------------------------------------------ delete / label / cordon


async def test_delete_removes_the_object_and_waits_for_it(kubectl: Kubectl, ns: str) -> None:
    """DELETE returns the object; kubectl then watches until it is gone."""
    (await kubectl.apply(configmap(ns))).ok()
    res = (await kubectl("delete", "configmap", "settings", "-n", ns)).ok()
    assert res.out.strip() == f'configmap "settings" deleted from {ns} namespace'
    gone = await kubectl("get", "configmap", "settings", "-n", ns)
    assert gone.rc != 0
    assert 'Error from server (NotFound): configmaps "settings" not found' in gone.err


async def test_label_adds_and_removes_a_label(kubectl: Kubectl, ns: str) -> None:
    """`label` is a merge patch on metadata.labels; `key-` sends null to delete."""
    (await kubectl.apply(configmap(ns))).ok()
    res = (await kubectl("label", "configmap", "settings", "-n", ns, "tier=gold")).ok()
    assert res.out.strip() == "configmap/settings labeled"
    shown = (await kubectl("get", "configmap", "-n", ns, "-l", "tier=gold")).ok().out
    assert "settings" in shown
    (await kubectl("label", "configmap", "settings", "-n", ns, "tier-")).ok()
    got = await kubectl.json("get", "configmap", "settings", "-n", ns)
    assert "tier" not in (got["metadata"].get("labels") or {})


async def test_cordon_marks_the_node_unschedulable(kubectl: Kubectl) -> None:
    """`cordon` patches spec.unschedulable (strategic merge patch); the Table shows
    `Ready,SchedulingDisabled`; `uncordon` reverses it."""
    nodes = await kubectl.json("get", "nodes")
    name = nodes["items"][0]["metadata"]["name"]
    try:
        res = (await kubectl("cordon", name)).ok()
        assert res.out.strip() == f"node/{name} cordoned"
        row = (await kubectl("get", "node", name)).ok().out.splitlines()[1].split()
        assert row[1] == "Ready,SchedulingDisabled"
        assert (await kubectl.json("get", "node", name))["spec"]["unschedulable"] is True
    finally:
        (await kubectl("uncordon", name)).ok()
    row = (await kubectl("get", "node", name)).ok().out.splitlines()[1].split()
    assert row[1] == "Ready"


async def test_logs_of_a_simulated_pod_say_they_are_simulated(kubectl: Kubectl, ns: str,
                                                              sim: SimFleet) -> None:
    """`pods/log` exists; a simulated container runs no process, and says so."""
    (await kubectl.apply(job(ns, "logged"))).ok()
    for _ in range(100):
        res = await kubectl("logs", "job/logged", "-n", ns)
        if res.rc == 0:
            break
        await asyncio.sleep(0.1)
    assert res.ok().out.startswith("[simulated]")
    assert "no process runs" in res.out
