"""The Helm chart `deploy/helm/aifleet` against the real helm and kubectl.

- `helm lint` passes with the default values and with production-like ones (every
  optional part on: `ci/production-values.yaml`); bad values are refused by the schema;
  an install without a repo is refused at render time.
- Installed into another namespace (`-n other`), every object is there, the Role and
  its binding cover that namespace and the alerts select it; nothing names
  `aifleet-system` (the controller follows its pod's namespace: clusters/namespace.py).
- `deploy/manifests/aifleet.yaml` is what the chart renders now (`make manifests`).
- Every rendered object is accepted by `kubectl apply --server-side --dry-run=server
  --validate=strict` on a simulated cluster; the ServiceMonitor and PrometheusRule go
  against a minimal CRD of their fields (`charts/prometheus-operator-crds.yaml`), not
  prometheus-operator's full one. The simulator refuses unknown fields and wrong types
  (strict), but does not check the semantics of probes, security contexts or volumes
  (docs/simulator.md, Validation row): `FLEET_E2E_KUBECONFIG` runs the same against a
  real cluster.
- `helm install` into a simulated management cluster succeeds (no image is pulled: the
  simulator runs the pods as it runs any).
- The pod is locked down, the Role is only what the controller touches, and the alerts
  query metrics the controller exports.

The simulator does not enforce RBAC: that the Role is enough is shown by the rules
matching the calls the code makes (names from the code), not by a 403.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from kubernetes_asyncio import client

from tests.contract.k8s import eventually, raw
from tests.contract.test_helm import Helm
from tests.contract.test_helm import _binary as helm_binary
from tests.contract.test_helm import helm as helm_fixture
from tests.contract.test_kubectl import Kubectl
from tests.contract.test_kubectl import _binary as kubectl_binary
from tests.contract.test_kubectl import kubectl as kubectl_fixture

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "aifleet"
PRODUCTION = CHART / "ci" / "production-values.yaml"
CRDS = Path(__file__).resolve().parent / "charts" / "prometheus-operator-crds.yaml"
NS = "aifleet-system"
REPO = ("--set", "fleet.repo=https://git.example.com/ml/fleet.git")
helm = helm_fixture
kubectl = kubectl_fixture
pytestmark = pytest.mark.skipif(helm_binary() is None or kubectl_binary() is None,
                                reason="helm/kubectl not found: run `make kubectl`")


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True,
                          cwd=ROOT)


def template(*args: str, ns: str = NS) -> list[dict[str, Any]]:
    r = run_helm("template", "aifleet", str(CHART), "-n", ns, *args)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


VALUES = {"default": REPO,
          "production": ("-f", str(PRODUCTION), "--set", "podDisruptionBudget.enabled=true")}


@pytest.mark.parametrize("values", VALUES, ids=list(VALUES))
def test_helm_lint_passes(values: str) -> None:
    r = run_helm("lint", str(CHART), "--strict", "-n", NS, *VALUES[values])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 chart(s) failed" in r.stdout


def test_values_the_schema_refuses_and_installs_the_chart_refuses() -> None:
    r = run_helm("template", "x", str(CHART), "-n", NS, *REPO, "--set", "replicaCount=0")
    assert r.returncode != 0 and "replicaCount" in r.stderr
    r = run_helm("template", "x", str(CHART), "-n", NS, *REPO, "--set", "rbac.creat=true")
    assert r.returncode != 0 and "creat" in r.stderr  # a typo is not silently ignored
    r = run_helm("template", "x", str(CHART), "-n", NS)
    assert r.returncode != 0 and "fleet.repo" in r.stderr
    r = run_helm("template", "x", str(CHART), "-n", NS, *REPO,
                 "--set", "persistence.existingClaim=state")
    assert r.returncode != 0 and "replicaCount 1" in r.stderr
    claim = by_kind(template(*REPO, "--set", "persistence.existingClaim=state",
                             "--set", "replicaCount=1"))["Deployment"]
    volumes = {v["name"]: v for v in claim["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"] == {"claimName": "state"}


def test_the_plain_manifests_are_what_the_chart_renders() -> None:
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "scripts/render_manifests.py",
                        "--check"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(
        (ROOT / "deploy" / "manifests" / "aifleet.yaml").read_text()) if d}
    assert {"Deployment", "ServiceAccount", "Role", "RoleBinding", "Service",
            "NetworkPolicy"} <= kinds


def test_the_pod_runs_locked_down_with_leader_election_in_its_own_cluster() -> None:
    dep = by_kind(template(*REPO))["Deployment"]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"][:3] == ["run", "--leader-elect", "--home-in-cluster"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env["FLEET_LISTEN"] == "0.0.0.0:8080"
    assert env["FLEET_IDENTITY"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    sc, psc = c["securityContext"], pod["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["privileged"] is False
    assert psc["runAsNonRoot"] is True and psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # The read-only root needs writable state and /tmp volumes.
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/var/lib/aifleet", "/tmp"}


def test_secrets_reach_the_pod_by_reference_never_by_value() -> None:
    objects = template("-f", str(PRODUCTION))
    assert "Secret" not in {o["kind"] for o in objects}
    c = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["FLEET_REPO"]["valueFrom"]["secretKeyRef"] == {"name": "aifleet-git",
                                                              "key": "url"}
    assert env["FLEET_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == \
        "aifleet-webhook"
    assert env["FLEET_KUBECONFIG"]["value"] == "/etc/aifleet/members/kubeconfig"
    assert env["FLEET_API_TOKENS_FILE"]["value"] == "/etc/aifleet/api/tokens"
    assert env["FLEET_GIT_SSH_KEY"]["value"] == "/etc/aifleet/git-ssh/ssh-privatekey"
    assert c["args"][3:] == ["--ledger", "--max-deletion-fraction=0.2"]


def test_the_role_is_only_what_the_controller_touches_in_its_namespace() -> None:
    from clusters.leader import LEASE_NAME
    from clusters.namespace import DEFAULT
    from controllers.persist import sharedplan, sharedstate
    from controllers.runtime import sourceguard

    objects = template(*REPO)
    assert not {"ClusterRole", "ClusterRoleBinding"} & {o["kind"] for o in objects}
    role = by_kind(objects)["Role"]
    assert role["metadata"]["namespace"] == DEFAULT == NS
    named = {(r["resources"][0], tuple(r["verbs"])): set(r.get("resourceNames", ()))
             for r in role["rules"]}
    assert named == {
        ("leases", ("get", "update")): {LEASE_NAME},
        ("leases", ("create",)): set(),
        ("configmaps", ("get", "update")): {sharedplan.NAME, sourceguard.CONFIGMAP},
        ("configmaps", ("create",)): set(),
        ("configmaps", ("get", "update", "delete")): set(sharedstate.configmap_names()) |
        set(sharedplan.part_names()),
    }
    production = by_kind(template("-f", str(PRODUCTION)))
    env = {e["name"]: e.get("value")
           for e in production["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FLEET_CLUSTER_SECRETS"] == "true"  # members through `fleet cluster add`
    assert "FLEET_CLUSTER_SECRETS" not in {
        e["name"] for e in by_kind(objects)["Deployment"]["spec"]["template"]["spec"][
            "containers"][0]["env"]}
    secrets = [r for r in production["Role"]["rules"] if r["resources"] == ["secrets"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"],
                        "verbs": ["get", "list", "watch"]}]


def test_shards_run_a_replica_per_shard_with_only_the_shard_leases_added() -> None:
    from clusters.leader import LEASE_NAME
    from controllers.persist import shardstatus, sharedplan
    from controllers.runtime import sourceguard
    from fleet.shards import lease_name

    objects = by_kind(template(*REPO, "--set", "shards=3"))
    dep = objects["Deployment"]
    assert dep["spec"]["replicas"] == 3  # max(replicaCount 2, shards 3)
    env = {e["name"]: e.get("value")
           for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FLEET_SHARDS"] == "3"
    named = {(r["resources"][0], tuple(r["verbs"])): set(r.get("resourceNames", ()))
             for r in objects["Role"]["rules"]}
    assert named[("leases", ("get", "update"))] == {LEASE_NAME} | {
        lease_name(i) for i in range(3)}
    assert named[("configmaps", ("get", "update"))] == {
        sharedplan.NAME, sourceguard.CONFIGMAP} | {shardstatus.name_of(i) for i in range(3)}
    assert named[("leases", ("list",))] == set()
    # a follower's watch on the plan index alone (`controllers.runtime.planwatch`)
    assert named[("configmaps", ("watch",))] == {sharedplan.NAME}
    assert "FLEET_SHARDS" not in {e["name"] for e in by_kind(template(*REPO))[
        "Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    r = run_helm("template", "x", str(CHART), "-n", NS, "-f", str(PRODUCTION),
                 "--set", "shards=2")
    assert r.returncode != 0 and "--ledger" in r.stderr  # one ledger writer


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_every_optional_part_points_at_the_controller() -> None:
    """Selectors and names a strict schema cannot check: a NetworkPolicy, budget,
    Service or ServiceMonitor that selects nothing would be accepted and do nothing."""
    objects = by_kind(template("-f", str(PRODUCTION), "--set",
                               "podDisruptionBudget.enabled=true"))
    dep, svc = objects["Deployment"], objects["Service"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert selects(dep["spec"]["selector"]["matchLabels"], pod_labels)
    assert selects(svc["spec"]["selector"], pod_labels)
    assert [p["name"] for p in container["ports"]] == ["http"]
    assert [(p["name"], p["targetPort"]) for p in svc["spec"]["ports"]] == [("http", "http")]
    policy = objects["NetworkPolicy"]["spec"]
    assert selects(policy["podSelector"]["matchLabels"], pod_labels)
    assert policy["policyTypes"] == ["Ingress"]  # egress stays open: Git, member APIs
    assert policy["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert len(policy["ingress"][0]["from"]) == 2  # production-values' two namespaces
    assert selects(objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
                   pod_labels)
    monitor = objects["ServiceMonitor"]["spec"]
    assert selects(monitor["selector"]["matchLabels"], svc["metadata"]["labels"])
    assert monitor["endpoints"][0]["port"] == "http"
    assert monitor["endpoints"][0]["path"] == "/metrics"
    backends = [p["backend"]["service"] for r in objects["Ingress"]["spec"]["rules"]
                for p in r["http"]["paths"]]
    assert backends and all(b == {"name": svc["metadata"]["name"], "port": {"name": "http"}}
                            for b in backends)
    # By default only the webhook is exposed, and nothing optional is rendered.
    default = by_kind(template(*REPO))
    assert not {"Ingress", "ServiceMonitor", "PrometheusRule", "PodDisruptionBudget"} & \
        set(default)
    ingress = by_kind(template(*REPO, "--set", "ingress.enabled=true"))["Ingress"]
    assert [p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]] == ["/hooks/git"]
    assert "from" not in default["NetworkPolicy"]["spec"]["ingress"][0]  # from anywhere


OTHER = "other"


def test_installed_in_another_namespace_everything_is_there() -> None:
    objects = template("-f", str(PRODUCTION), "--set", "podDisruptionBudget.enabled=true",
                       ns=OTHER)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ServiceAccount", "Role", "RoleBinding", "Service",
            "NetworkPolicy", "PodDisruptionBudget", "Ingress", "ServiceMonitor",
            "PrometheusRule"} <= kinds
    assert {o["metadata"].get("namespace") for o in objects} == {OTHER}
    binding = by_kind(objects)["RoleBinding"]
    assert [s["namespace"] for s in binding["subjects"]] == [OTHER]
    for r in by_kind(objects)["PrometheusRule"]["spec"]["groups"][0]["rules"]:
        assert f'namespace="{OTHER}"' in r["expr"], r["alert"]
    # The pod is not told a namespace: the controller reads its own (the ServiceAccount
    # mount), so nothing can disagree with where the chart put the Role.
    assert "aifleet-system" not in yaml.safe_dump_all(objects)


def exported_metrics() -> set[str]:
    """The metric names the controller exports: its registry, rendered, and the
    families `controllers/status/observe.py` yields at each scrape."""
    from controllers.status.metrics import ControllerMetrics

    names = set(re.findall(r"^(aifleet_\w+)", ControllerMetrics().render(), re.M))
    source = (ROOT / "controllers" / "status" / "observe.py").read_text()
    for kind, name in re.findall(r'(Counter|Gauge)MetricFamily\(\s*"(aifleet_\w+)"', source):
        names.add(f"{name}_total" if kind == "Counter" else name)
    return names


def test_the_alerts_query_metrics_the_controller_exports() -> None:
    rule = by_kind(template("-f", str(PRODUCTION)))["PrometheusRule"]
    rules = rule["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {
        "AifleetNotLeading", "AifleetClusterUnreachable", "AifleetWorkloadsPending",
        "AifleetDriftCorrectionsSpiking", "AifleetLedgerWriteFailures"}
    exported = exported_metrics()
    for r in rules:
        used = set(re.findall(r"aifleet_\w+", r["expr"]))
        assert used and used <= exported, (r["alert"], used - exported)


async def crds_established(api: client.ApiClient) -> None:
    for name in ("servicemonitors.monitoring.coreos.com",
                 "prometheusrules.monitoring.coreos.com"):
        async def ready(name: str = name) -> bool:
            code, body, _ = await raw(
                api, "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conds = {c["type"]: c["status"] for c in
                     (body.get("status") or {}).get("conditions", [])} if code == 200 else {}
            return conds.get("Established") == "True"
        await eventually(ready)


DRY_RUNS = {**{name: (NS, name) for name in VALUES}, "production-in-other": (OTHER, "production")}


@pytest.mark.parametrize("case", DRY_RUNS, ids=list(DRY_RUNS))
async def test_every_rendered_object_passes_a_strict_server_side_dry_run(
        kubectl: Kubectl, api: client.ApiClient, case: str) -> None:
    ns, values = DRY_RUNS[case]
    (await kubectl("apply", "--server-side", "-f", str(CRDS))).ok()
    await crds_established(api)
    (await kubectl("create", "namespace", ns)).ok()
    objects = template(*VALUES[values], ns=ns)
    r = await kubectl("apply", "--server-side", "--dry-run=server", "--validate=strict",
                      "-f", "-", stdin=yaml.safe_dump_all(objects))
    assert r.rc == 0, r.err or r.out
    assert r.out.count("(server dry run)") == len(objects)
    # A field the server does not know is refused, so the check can fail.
    bad = by_kind(objects)["Deployment"]
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    r = await kubectl("apply", "--server-side", "--dry-run=server", "--validate=strict",
                      "-f", "-", stdin=yaml.safe_dump(bad))
    assert r.rc != 0 and "readinesProbe" in r.err


async def test_helm_install_into_a_management_cluster(helm: Helm,
                                                      api: client.ApiClient) -> None:
    out = await helm.ok("install", "aifleet", str(CHART), "-n", NS, "--create-namespace",
                        *REPO)
    assert "STATUS: deployed" in out
    base = f"/apis/apps/v1/namespaces/{NS}/deployments/aifleet"
    code, dep, _ = await raw(api, "GET", base)
    assert code == 200 and dep["spec"]["replicas"] == 2
    for path in (f"/api/v1/namespaces/{NS}/serviceaccounts/aifleet",
                 f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/aifleet",
                 f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings/aifleet",
                 f"/api/v1/namespaces/{NS}/services/aifleet",
                 f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/aifleet"):
        code, _body, _ = await raw(api, "GET", path)
        assert code == 200, path
    out = await helm.ok("status", "aifleet", "-n", NS)
    assert "STATUS: deployed" in out
    await helm.ok("uninstall", "aifleet", "-n", NS)
    code, _gone, _ = await raw(api, "GET", base)
    assert code == 404


INSTALL_MD = ROOT / "docs" / "install.md"
NEEDS_CONTROLLER = "# needs the running controller"


def install_md_commands() -> list[list[str]]:
    """The commands of docs/install.md's `sh` blocks, in order, without those marked as
    needing a running controller (the simulator runs no image)."""
    import shlex

    text = INSTALL_MD.read_text()
    commands: list[list[str]] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        skip = False
        for line in block.splitlines():
            if line.strip() == NEEDS_CONTROLLER:
                skip = True
            elif line.strip() and not line.startswith("#"):
                if not skip:
                    commands.append(shlex.split(line))
                skip = False
    return commands


def install_md_inputs(tmp: Path, kubeconfig: Path) -> dict[str, str]:
    """The files install.md's commands read: the members' kubeconfig (the simulated
    cluster, its context named as the member install.md registers), the management
    cluster's (the same simulated cluster), the repo URL with a token, the webhook
    secret, the files of the three Git credentials' Secrets."""
    from tests.contract.test_chart_git import secret_keys

    keys = secret_keys()  # made here: the three ways of Git credentials
    members = yaml.safe_load(kubeconfig.read_text())
    (context,) = members["contexts"]
    context["name"] = members["current-context"] = "br-sao-1"
    files = {"members.kubeconfig": yaml.safe_dump(members),
             "management.kubeconfig": kubeconfig.read_text(),
             "repo-url.txt": "https://fleet-bot:not-a-real-token@git.example.com/ml/fleet.git",
             "webhook-secret.txt": "not-a-real-webhook-secret",
             "git-token.txt": keys["aifleet-git-token"]["token"].decode(),
             "id_ed25519": keys["aifleet-git-ssh"]["ssh-privatekey"].decode(),
             "git-known-hosts": keys["aifleet-git-ssh"]["known_hosts"].decode(),
             "app.pem": keys["aifleet-github-app"]["private-key.pem"].decode()}
    for name, text in files.items():
        (tmp / name).write_text(text)
    return files


async def test_every_command_of_install_md_runs(kubectl: Kubectl, helm: Helm,
                                                api: client.ApiClient,
                                                kubeconfig: Path, tmp_path: Path) -> None:
    files = install_md_inputs(tmp_path, kubeconfig)

    def local(arg: str) -> str:
        if arg in files:
            return str(tmp_path / arg)
        for name in files:
            arg = arg.replace(f"={name}", f"={tmp_path / name}")
        return str(ROOT / arg) if arg.startswith("deploy/") else arg

    (await kubectl("apply", "--server-side", "-f", str(CRDS))).ok()  # prometheus-operator's
    await crds_established(api)
    commands = install_md_commands()
    assert sum("create" in c for c in commands) >= 4  # the namespace and the Secrets
    assert ["helm", "install"] in [c[:2] for c in commands]
    assert ["fleet", "cluster", "add"] in [c[:3] for c in commands]
    listed = ""
    for argv in commands:
        tool, *args = [local(a) for a in argv]
        assert tool in ("kubectl", "helm", "fleet"), argv
        if tool == "kubectl":
            r = await kubectl(*args)
            assert r.rc == 0, f"{' '.join(argv)}: {r.err or r.out}"
        elif tool == "helm":
            await helm.ok(*args)
        else:  # the simulated cluster serves in this process: run fleet beside it
            p = await anyio.run_process([sys.executable, "-m", "controllers.cli", *args],
                                        cwd=ROOT, check=False)
            assert p.returncode == 0, f"{' '.join(argv)}: {p.stderr.decode()}"
            listed += p.stdout.decode() if args[:2] == ["cluster", "list"] else ""
    assert re.search(r"^br-sao-1\s+Reachable", listed, re.M), listed
    code, secret, _ = await raw(api, "GET", f"/api/v1/namespaces/{NS}/secrets/br-sao-1")
    assert code == 200
    assert secret["metadata"]["labels"]["aifleet.dev/cluster-credentials"] == "true"
    code, dep, _ = await raw(api, "GET", f"/apis/apps/v1/namespaces/{NS}/deployments/aifleet")
    assert code == 200
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FLEET_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == \
        "aifleet-webhook"
    assert env["FLEET_GIT_TOKEN_FILE"]["value"] == "/etc/aifleet/git/token"
    for name in ("aifleet-git-token", "aifleet-git-ssh", "aifleet-github-app"):
        code, _secret, _ = await raw(api, "GET", f"/api/v1/namespaces/{NS}/secrets/{name}")
        assert code == 200, name
    for kind, name in (("ingresses", "aifleet"), ("servicemonitors", "aifleet"),
                       ("prometheusrules", "aifleet")):
        group = "networking.k8s.io" if kind == "ingresses" else "monitoring.coreos.com"
        code, _obj, _ = await raw(api, "GET", f"/apis/{group}/v1/namespaces/{NS}/{kind}/{name}")
        assert code == 200, kind
