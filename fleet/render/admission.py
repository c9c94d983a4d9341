"""What a real API server (1.35) would refuse of a workload's rendered objects, said at
the workload's own fields; and which changes a running Job cannot take in place.

`fleet validate` must refuse (file:line) every workload whose objects the server would
refuse, or the controller would fail on every reconcile where the PR check passed. Most
rules hold by construction of the model and the renderer (see docs/fleet-repo.md,
"What the API server is sent"): names and the team are DNS-1123 labels, label keys and
values are checked as Kubernetes checks them, replicas >= 1, ports 1..65535, GPUs a
whole count with request == limit, quantities in a subset of the server's grammar,
no CPU/memory limits (so requests never exceed them). What is left is checked here:

- an inference workload's Service is named after it, and a Service name must be a
  DNS-1035 label, which cannot start with a digit (`pkg/apis/core/validation/
  validation.go`: `ValidateServiceName = apimachineryvalidation.NameIsDNS1035Label`);
- a toleration with `tolerationSeconds` must have effect `NoExecute`, and an `Equal`
  toleration's value must be a label value (same file, `validateTolerations`); the
  fleet's own `aifleet.dev/unreachable` toleration is not rendered, so it is exempt;
- an Indexed (training) Job's pods get the hostname `<name>-<index>`, a DNS-1123 label
  (the Job controller, `pkg/controller/job/job_controller.go`, `manageJob`; a pod's
  hostname is checked by `ValidatePodSpec`): the Job would be taken and never run a
  pod, so a name too long for its last index is refused;
- the inventory label `<team>.<name>` is at most 63 characters
  (`fleet.safety.workload_label_problem`, applied by the loader);
- a training workload's headless Service is named after it too (DNS-1035), and its
  pods get the rendezvous env, so `env` may not set MASTER_ADDR, MASTER_PORT,
  WORLD_SIZE or NODE_RANK itself;
- the pod template overlay (`fleet.render.overlay.overlay_problems`): fields of the
  1.35 PodSpec, merge keys, and nothing aifleet owns.

Not the server's rule but refused here as well, at the variable: a literal `env` value
that looks like a credential (`fleet.credentials`).

A running Job refuses in place (`pkg/apis/batch/validation/validation.go`,
`ValidateJobSpecUpdate`): any change of its pod template, its selector, its completion
mode, `backoffLimitPerIndex` or `podFailurePolicy`; its `completions` unless it is Indexed
and completions changes together with
parallelism to the same value (`validateCompletions`, ElasticIndexedJob, GA in 1.31).
`recreate_needed` says which, so `fleet plan` and status can say a re-create is needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleet.credentials import credential_problems
from fleet.models import UNREACHABLE_TOLERATION_KEY, Workload
from fleet.render.keys import RENDEZVOUS_ENV
from fleet.render.overlay import overlay_problems

_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_NAME = 63


@dataclass(frozen=True, slots=True)
class Problem:
    """A field of the Workload document (its YAML path) and why the server would refuse
    the objects rendered from it."""

    path: tuple[str | int, ...]
    message: str


def is_dns1035_label(value: str) -> bool:
    """apimachinery `IsDNS1035Label`: lower-case alphanumerics and '-', starting with a
    letter, ending with an alphanumeric, at most 63 characters."""
    return len(value) <= MAX_NAME and bool(_DNS1035_LABEL.match(value))


def is_label_value(value: str) -> bool:
    """apimachinery `IsValidLabelValue`: empty, or at most 63 alphanumerics, '-', '_'
    and '.', starting and ending with an alphanumeric."""
    return len(value) <= MAX_NAME and bool(_LABEL_VALUE.match(value))


def workload_problems(w: Workload) -> list[Problem]:
    """Why the API server would refuse objects rendered from `w` (empty: it would not)."""
    out: list[Problem] = []
    name = w.metadata.name
    if w.spec.type in ("inference", "training") and not is_dns1035_label(name):
        out.append(Problem(("metadata", "name"), (
            f"{name}: an {w.spec.type} workload's Service is named after it, and a "
            "Service name must start with a letter (a DNS-1035 label: lower-case letters, "
            "digits and '-', starting with a letter); rename the workload")))
    if w.spec.type == "training":
        hostname = f"{name}-{w.spec.replicas - 1}"
        if len(hostname) > MAX_NAME:
            out.append(Problem(("metadata", "name"), (
                f"{name}: a training Job is Indexed, and its last pod's hostname "
                f"{hostname} ({len(hostname)} characters) would be over {MAX_NAME}, so "
                "the API server would refuse its pods; shorten metadata.name")))
    if w.spec.type == "training":
        for var in sorted(set(w.spec.env) & set(RENDEZVOUS_ENV)):
            out.append(Problem(("spec", "env", var), (
                f"{var}: aifleet sets it on training pods (multi-node rendezvous: "
                f"{', '.join(RENDEZVOUS_ENV)}); remove it from env")))
    for var, message in credential_problems(w.spec.env):
        out.append(Problem(("spec", "env", var), message))
    if w.spec.pod.overlay:
        for path, message in overlay_problems(w.spec.pod.overlay):
            out.append(Problem(("spec", "pod", "overlay", *path), message))
    for i, t in enumerate(w.spec.placement.tolerations):
        if t.key == UNREACHABLE_TOLERATION_KEY:
            continue  # the fleet's own grace: never rendered into a pod
        path = ("spec", "placement", "tolerations", i)
        if t.toleration_seconds is not None and t.effect != "NoExecute":
            out.append(Problem((*path, "tolerationSeconds"), (
                "tolerationSeconds is only for effect NoExecute (the API server refuses "
                f"it with effect {t.effect or 'unset'}); set effect: NoExecute or drop "
                "tolerationSeconds")))
        if t.operator == "Equal" and t.value is not None and not is_label_value(t.value):
            out.append(Problem((*path, "value"), (
                f"{t.value!r}: a toleration's value must be a label value (at most 63 "
                "alphanumerics, '-', '_' or '.', starting and ending with an "
                "alphanumeric)")))
    return out


def recreate_needed(before: Mapping[str, Any], after: Mapping[str, Any]) -> str | None:
    """Why a Job rendered as `before` cannot be changed in place into `after`, both as
    `render` writes them (a live object carries server defaults: compare renders); None
    when it can, or when they are not Jobs. Names the fields the API server refuses."""
    if before.get("kind") != "Job" or after.get("kind") != "Job":
        return None
    old, new = before.get("spec") or {}, after.get("spec") or {}
    fields: list[str] = []
    if old.get("template") != new.get("template"):
        fields.append("spec.template")
    for immutable in ("completionMode", "backoffLimitPerIndex", "podFailurePolicy"):
        if old.get(immutable) != new.get(immutable):
            fields.append(f"spec.{immutable}")
    if old.get("completions") != new.get("completions"):
        indexed = new.get("completionMode") == "Indexed"
        if not indexed or new.get("completions") != new.get("parallelism"):
            fields.append("spec.completions")
    if not fields:
        return None
    return f"{', '.join(fields)} cannot change while the Job runs"
