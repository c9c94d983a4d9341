"""What a Workload says about its pods beyond image, command and GPUs: volumes, shared
memory, Secret and ConfigMap references, probes, and the pod-level knobs real GPU jobs
need (service account, pull secrets, priority class, node tolerations and affinity,
and a pod template overlay as the escape hatch).

Names follow the Kubernetes fields they render to, so a reader of the rendered pod
recognises them. Each rule checked here is one the API server checks
(`pkg/apis/core/validation/validation.go`): object names referred to are DNS-1123
subdomains (`ValidateSecretName`, `ValidateConfigMapName`, `ValidateServiceAccountName`,
`ValidatePriorityClassName` are `NameIsDNSSubdomain`), a PVC claim name is a DNS-1123
subdomain too (`validatePersistentClaimVolumeSource`), volume names are DNS-1123 labels
(`validateVolumes`), mount paths are absolute here (stricter than the server, which
takes relative ones and resolves them against the container root: there is no use for
that in a GPU job).

A Secret is only ever named, never held: the value exists in the cluster, never in Git,
the plan, the ledger or a log (see `fleet.credentials` for what `fleet validate` refuses
in plain `env`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from fleet.models.base import DnsLabel, LabelKey, Model, Quantity, unique

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def _subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 subdomain (lower-case letters, digits, '-' and "
            "'.', starting and ending with a letter or digit, at most 253 characters)")
    return value


def _mount_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r}: a mount path must be absolute (start with '/')")
    if ":" in value:
        raise ValueError(f"{value!r}: a mount path must not contain ':'")
    if ".." in value.split("/"):
        raise ValueError(f"{value!r}: a mount path must not contain '..'")
    return value


ObjectName = Annotated[str, AfterValidator(_subdomain)]
MountPath = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_mount_path)]
EnvPrefix = Annotated[str, Field(max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")]
SHM_PATH = "/dev/shm"
SHM_VOLUME = "dshm"


class KeyRef(Model):
    """One key of a Secret or ConfigMap in the workload's namespace."""

    name: ObjectName = Field(description="The Secret's (ConfigMap's) name.",
                             examples=["hf-token"])
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = (
        Field(description="The key in it.", examples=["token"]))
    optional: bool | None = Field(
        None, description="true: the pod starts even if the key is missing.")


class EnvValueFrom(Model):
    """An environment variable whose value comes from the cluster, never from Git:
    exactly one of `secretKeyRef` or `configMapKeyRef`."""

    secret_key_ref: KeyRef | None = Field(
        None, description="A key of a Secret in the team namespace; the value stays in "
                          "the cluster.")
    config_map_key_ref: KeyRef | None = Field(
        None, description="A key of a ConfigMap in the team namespace.")

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvValueFrom:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("set exactly one of secretKeyRef or configMapKeyRef")
        return self


class NameRef(Model):
    """A Secret or ConfigMap by name."""

    name: ObjectName = Field(description="Its name, in the team namespace.",
                             examples=["wandb"])
    optional: bool | None = Field(None, description="true: the pod starts without it.")


class EnvFromSource(Model):
    """Every key of a Secret or ConfigMap as environment variables: exactly one of
    `secretRef` or `configMapRef`."""

    prefix: EnvPrefix | None = Field(
        None, description="Prepended to every key (a valid variable-name start).")
    secret_ref: NameRef | None = Field(None, description="A Secret: all its keys.")
    config_map_ref: NameRef | None = Field(None, description="A ConfigMap: all its keys.")

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvFromSource:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("set exactly one of secretRef or configMapRef")
        return self


class PvcSource(Model):
    """A PersistentVolumeClaim in the team namespace."""

    claim_name: ObjectName = Field(description="The PersistentVolumeClaim's name.",
                                   examples=["datasets"])


class ConfigMapSource(Model):
    """A ConfigMap in the team namespace, its keys as files."""

    name: ObjectName = Field(description="The ConfigMap's name.")


class SecretSource(Model):
    """A Secret in the team namespace, its keys as files."""

    secret_name: ObjectName = Field(description="The Secret's name.")


class EmptyDirSource(Model):
    """Scratch space that lives as long as the pod."""

    medium: Literal["", "Memory"] = Field(
        "", description="`Memory`: a tmpfs (counts against the pod's memory); empty: the "
                        "node's disk.")
    size_limit: Quantity | None = Field(
        None, description="The most it may hold, a quantity.", examples=["16Gi"])


class Volume(Model):
    """A volume and where the container mounts it: exactly one source."""

    name: DnsLabel = Field(description="The volume's name (a DNS-1123 label).",
                           examples=["data"])
    mount_path: MountPath = Field(description="Where the container sees it (absolute).",
                                  examples=["/data"])
    read_only: bool | None = Field(None, description="Mount it read-only.")
    sub_path: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="Mount this path inside the volume instead of its root.")
    persistent_volume_claim: PvcSource | None = Field(
        None, description="A PersistentVolumeClaim in the team namespace (datasets, "
                          "model weights, checkpoints).")
    config_map: ConfigMapSource | None = Field(None, description="A ConfigMap's keys as files.")
    secret: SecretSource | None = Field(None, description="A Secret's keys as files.")
    empty_dir: EmptyDirSource | None = Field(
        None, description="Scratch space for the pod's lifetime.")

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        given = [s for s in (self.persistent_volume_claim, self.config_map, self.secret,
                             self.empty_dir) if s is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of persistentVolumeClaim, configMap, secret "
                             "or emptyDir")
        if self.sub_path is not None and (
                self.sub_path.startswith("/") or ".." in self.sub_path.split("/")):
            raise ValueError(f"subPath {self.sub_path!r} must be relative, without '..'")
        return self

    def source(self) -> dict[str, Any]:
        """The pod volume's source, as Kubernetes spells it."""
        if self.persistent_volume_claim is not None:
            claim: dict[str, Any] = {"claimName": self.persistent_volume_claim.claim_name}
            if self.read_only:
                claim["readOnly"] = True
            return {"persistentVolumeClaim": claim}
        if self.config_map is not None:
            return {"configMap": {"name": self.config_map.name}}
        if self.secret is not None:
            return {"secret": {"secretName": self.secret.secret_name}}
        assert self.empty_dir is not None  # one source: checked above
        empty: dict[str, Any] = {}
        if self.empty_dir.medium:
            empty["medium"] = self.empty_dir.medium
        if self.empty_dir.size_limit is not None:
            empty["sizeLimit"] = self.empty_dir.size_limit
        return {"emptyDir": empty}


def check_volumes(volumes: tuple[Volume, ...], shm: str | None) -> None:
    """Volume names and mount paths are unique, as the API server requires
    (`validateVolumes`: duplicate name; `validateVolumeMounts`: must be unique), the
    `shm` shorthand included."""
    names = tuple(v.name for v in volumes) + ((SHM_VOLUME,) if shm is not None else ())
    paths = tuple(v.mount_path for v in volumes) + ((SHM_PATH,) if shm is not None else ())
    unique(names, "volume name (`shm` uses dshm)")
    unique(paths, "mount path (`shm` mounts /dev/shm)")


class HttpGet(Model):
    """An HTTP GET against the container."""

    path: Annotated[str, Field(pattern=r"^/")] = Field(
        "/", description="The HTTP path to GET.", examples=["/health"])
    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None, description="Default: the inference port.")


class TcpSocket(Model):
    """A TCP connect to the container."""

    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None, description="Default: the inference port.")


class ExecAction(Model):
    """A command run in the container."""

    command: Annotated[tuple[str, ...], Field(min_length=1)] = Field(
        description="Run in the container; exit 0 is healthy.")


class Probe(Model):
    """A readiness or liveness probe: exactly one of `httpGet`, `tcpSocket`, `exec`."""

    http_get: HttpGet | None = Field(None, description="HTTP GET; 200-399 is healthy.")
    tcp_socket: TcpSocket | None = Field(None, description="A TCP connect.")
    exec: ExecAction | None = Field(None, description="A command in the container.")
    initial_delay_seconds: Annotated[int, Field(ge=0)] | None = Field(
        None, description="Wait this long after start (model loading takes minutes).",
        examples=[120])
    period_seconds: Annotated[int, Field(ge=1)] | None = Field(None, description="How often.")
    timeout_seconds: Annotated[int, Field(ge=1)] | None = Field(None, description="Per try.")
    failure_threshold: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Failures in a row before unhealthy.")

    @model_validator(mode="after")
    def _one_handler(self) -> Probe:
        # validateHandler: "may not specify more than 1 handler type"; and one is required
        given = [h for h in (self.http_get, self.tcp_socket, self.exec) if h is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of httpGet, tcpSocket or exec")
        return self

    def render(self, default_port: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.http_get is not None:
            out["httpGet"] = {"path": self.http_get.path,
                              "port": self.http_get.port or default_port}
        elif self.tcp_socket is not None:
            out["tcpSocket"] = {"port": self.tcp_socket.port or default_port}
        elif self.exec is not None:
            out["exec"] = {"command": list(self.exec.command)}
        for key, value in (("initialDelaySeconds", self.initial_delay_seconds),
                           ("periodSeconds", self.period_seconds),
                           ("timeoutSeconds", self.timeout_seconds),
                           ("failureThreshold", self.failure_threshold)):
            if value is not None:
                out[key] = value
        return out


class NodeSelectorRequirement(Model):
    """A node label expression (Kubernetes `NodeSelectorRequirement`)."""

    key: LabelKey = Field(description="The node label key.",
                          examples=["topology.kubernetes.io/zone"])
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(
        description="In/NotIn: one of `values`; Exists/DoesNotExist: no values; Gt/Lt: "
                    "one integer value.")
    values: tuple[str, ...] = Field((), description="The values, by operator.")

    @model_validator(mode="after")
    def _values_fit(self) -> NodeSelectorRequirement:
        # validateNodeSelectorRequirement (pkg/apis/core/validation/validation.go)
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        if self.operator in ("Gt", "Lt") and (
                len(self.values) != 1 or not re.fullmatch(r"-?[0-9]+", self.values[0])):
            raise ValueError(f"operator {self.operator} takes exactly one integer value")
        return self


class PreferredTerm(Model):
    """A weighted node preference."""

    weight: Annotated[int, Field(ge=1, le=100)] = Field(description="1..100.")
    match_expressions: Annotated[tuple[NodeSelectorRequirement, ...], Field(min_length=1)] = (
        Field(description="All must hold for the preference to count."))


class NodeAffinity(Model):
    """Node affinity added to the pods (the GPU product selector stays)."""

    required: tuple[NodeSelectorRequirement, ...] = Field(
        (), description="Node label expressions every pod's node must match (all of them).")
    preferred: tuple[PreferredTerm, ...] = Field(
        (), description="Weighted preferences among the nodes that qualify.")

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.required:
            out["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
                {"matchExpressions": [_requirement(r) for r in self.required]}]}
        if self.preferred:
            out["preferredDuringSchedulingIgnoredDuringExecution"] = [
                {"weight": p.weight, "preference": {
                    "matchExpressions": [_requirement(r) for r in p.match_expressions]}}
                for p in self.preferred]
        return out


def _requirement(r: NodeSelectorRequirement) -> dict[str, Any]:
    out: dict[str, Any] = {"key": r.key, "operator": r.operator}
    if r.values:
        out["values"] = list(r.values)
    return out


class NodeToleration(Model):
    """A node taint the pods tolerate (Kubernetes `Toleration`), e.g. the
    `nvidia.com/gpu:NoSchedule` taint most GPU node pools carry. Not judged by
    placement: cluster-level taints are `placement.tolerations`."""

    key: LabelKey | None = Field(None, description="The taint key; unset with Exists: all.",
                                 examples=["nvidia.com/gpu"])
    operator: Literal["Equal", "Exists"] = Field("Equal", description="Equal or Exists.")
    value: str | None = Field(None, description="For Equal: the taint's value.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Only taints of this effect (unset: any).")
    toleration_seconds: Annotated[int, Field(ge=0)] | None = Field(
        None, description="NoExecute only: how long the pod stays once tainted.")

    @model_validator(mode="after")
    def _shape(self) -> NodeToleration:
        # validateTolerations (pkg/apis/core/validation/validation.go)
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("operator Exists takes no value")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without a key must use operator Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds is only for effect NoExecute")
        if self.value and (len(self.value) > 63 or not re.fullmatch(
                r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", self.value)):
            raise ValueError(f"{self.value!r}: a toleration's value must be a label value")
        return self

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"operator": self.operator}
        for key, value in (("key", self.key), ("value", self.value), ("effect", self.effect),
                           ("tolerationSeconds", self.toleration_seconds)):
            if value is not None:
                out[key] = value
        return out


class PodOptions(Model):
    """Pod-level settings: identity, pull secrets, scheduling, and the overlay."""

    service_account_name: ObjectName | None = Field(
        None, description="The pods' ServiceAccount in the team namespace (for workload "
                          "identity to buckets and registries).", examples=["trainer"])
    image_pull_secrets: tuple[ObjectName, ...] = Field(
        (), description="Secrets (by name) to pull the image with.", examples=[["regcred"]])
    priority_class_name: ObjectName | None = Field(
        None, description="A PriorityClass in the cluster (kube-scheduler's preemption "
                          "order; the fleet's own `spec.priority` is separate). The "
                          "cluster must have it: the API server refuses pods naming one "
                          "it does not know.", examples=["high-priority"])
    tolerations: tuple[NodeToleration, ...] = Field(
        (), description="Node taints the pods tolerate, e.g. "
                        "`{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}`.")
    node_affinity: NodeAffinity | None = Field(
        None, description="Node affinity added to the GPU product selector.")
    overlay: dict[str, Any] | None = Field(
        None, description="A strategic-merge patch over the rendered pod template "
                          "(`metadata` and `spec`), for anything else: containers merge by "
                          "`name`, volumes by `name`, env by `name`; other lists replace; "
                          "`null` removes a field. What aifleet owns is refused: its "
                          "labels and annotations (`aifleet.dev/...`, Kueue's queue name), "
                          "the GPU resources and claims, the GPU product nodeSelector, the "
                          "rendezvous env (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, "
                          "NODE_RANK) and the pod's hostname/subdomain.",
        examples=[{"spec": {"containers": [{"name": "main",
                                            "securityContext": {"runAsNonRoot": True}}]}}])

    @model_validator(mode="after")
    def _unique(self) -> PodOptions:
        unique(self.image_pull_secrets, "image pull secret")
        return self


NO_POD_OPTIONS = PodOptions()
"""The pod options of a Workload that sets none: one frozen instance shared by all of
them, so a big fleet holds one object (and its field set) fewer per Workload for the
garbage collector to walk during a plan."""
