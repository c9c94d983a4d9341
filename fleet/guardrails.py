"""Guardrails: limits on Workloads, kept as policy in the repo and checked at plan time.

An admission webhook moved left: where a cluster would refuse an object when it is
applied, the fleet refuses the Workload file in the pull request that adds it, with the
file and line of the offending field. `policies/guardrails.yaml` (kind `Guardrails`)
holds fleet-wide `defaults` and per-team entries:

    spec:
      defaults:
        maxGpusPerWorkload: 64          # replicas x gpu.count
        maxReplicas: 32
        allowedFlavours: [h100-80gb, a100-80gb]
        requiredLabels: [owner, cost-centre]
        allowedRegistries: [registry.internal]   # host, or host/path prefix
      teams:
        nlp-team: {maxGpusPerWorkload: 128}

A team's entry replaces, rule by rule, the defaults it sets (the rest still apply): the
policy folder is the platform team's (see `fleet.owners`), so an exception for one team
is a reviewed decision, not a loophole. Several Guardrails documents are merged; the
defaults or a team defined twice is an error, as with ResidencyPolicy groups.

A workload that breaks a guardrail is *invalid*, as a refused admission would leave the
object unchanged: the controller does not place or change it, and does not prune what
already runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from fleet.diagnostics import Diagnostic, SourceRef
from fleet.imageref import image_reference_problem
from fleet.models import GuardrailRules, Guardrails, Workload

_RULES = ("max_gpus_per_workload", "max_replicas", "allowed_flavours", "required_labels",
          "allowed_registries")
_YAML_NAMES = {
    "max_gpus_per_workload": "maxGpusPerWorkload",
    "max_replicas": "maxReplicas",
    "allowed_flavours": "allowedFlavours",
    "required_labels": "requiredLabels",
    "allowed_registries": "allowedRegistries",
}


@dataclass(frozen=True, slots=True)
class RuleSource:
    """Where a rule in force was written, so a violation can cite it."""

    scope: str
    """`defaults` or the team's name."""
    file: str
    line: int

    def cite(self, rule: str) -> str:
        who = "fleet-wide" if self.scope == "defaults" else f"for {self.scope}"
        return f"guardrail {_YAML_NAMES[rule]} {who}, {self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class GuardrailPolicy:
    """The merged Guardrails documents of one commit."""

    defaults: GuardrailRules = field(default_factory=GuardrailRules)
    teams: dict[str, GuardrailRules] = field(default_factory=dict)
    sources: dict[tuple[str, str], RuleSource] = field(default_factory=dict)
    """(scope, rule attribute) -> where it is written."""

    _memo: dict[str, dict[str, tuple[object, RuleSource | None]]] = field(
        default_factory=dict, compare=False, repr=False)

    def rule(self, team: str, name: str) -> tuple[object, RuleSource | None]:
        """The value of rule `name` for `team` (its own entry first), and its source."""
        return self.rules_for(team)[name]

    def rules_for(self, team: str) -> dict[str, tuple[object, RuleSource | None]]:
        """Every rule in force for `team`, resolved once per team (10,000 workloads check
        against 25 teams' rules, not 10,000 times five lookups)."""
        found = self._memo.get(team)
        if found is None:
            own = self.teams.get(team)
            found = {}
            for name in _RULES:
                if own is not None and getattr(own, name) is not None:
                    found[name] = (getattr(own, name), self.sources.get((team, name)))
                else:
                    found[name] = (getattr(self.defaults, name),
                                   self.sources.get(("defaults", name)))
            self._memo[team] = found
        return found

    @property
    def empty(self) -> bool:
        return not self.sources


def build_guardrails(
    docs: Iterable[tuple[Guardrails, SourceRef]],
) -> tuple[GuardrailPolicy, list[Diagnostic]]:
    """Merge Guardrails documents; a scope defined twice is reported and the first kept."""
    errors: list[Diagnostic] = []
    defaults: GuardrailRules | None = None
    defaults_src: SourceRef | None = None
    teams: dict[str, GuardrailRules] = {}
    team_src: dict[str, SourceRef] = {}
    sources: dict[tuple[str, str], RuleSource] = {}
    for doc, src in docs:
        name = doc.metadata.name
        set_fields = doc.spec.model_fields_set
        if "defaults" in set_fields:
            if defaults_src is not None:
                errors.append(src.at(f"guardrail defaults are already defined in "
                                     f"{defaults_src.file}", "spec", "defaults",
                                     kind="Guardrails", name=name))
            else:
                defaults, defaults_src = doc.spec.defaults, src
                _note(sources, "defaults", doc.spec.defaults, src, ("spec", "defaults"))
        for team, rules in sorted(doc.spec.teams.items()):
            if team in team_src:
                errors.append(src.at(f"guardrails for team {team} are already defined in "
                                     f"{team_src[team].file}", "spec", "teams", team,
                                     kind="Guardrails", name=name))
                continue
            teams[team], team_src[team] = rules, src
            _note(sources, team, rules, src, ("spec", "teams", team))
    return GuardrailPolicy(defaults or GuardrailRules(), teams, sources), errors


def _note(sources: dict[tuple[str, str], RuleSource], scope: str, rules: GuardrailRules,
          src: SourceRef, path: tuple[str, ...]) -> None:
    for rule in _RULES:
        if getattr(rules, rule) is not None:
            line = src.line_of(*path, _YAML_NAMES[rule])
            sources[(scope, rule)] = RuleSource(scope, src.file, line)


def check_workload(policy: GuardrailPolicy, w: Workload, src: SourceRef) -> list[Diagnostic]:
    """Every guardrail `w` breaks, each at the line of the offending field."""
    if policy.empty:
        return []
    out: list[Diagnostic] = []
    team, spec = w.team, w.spec
    rules = policy.rules_for(team)

    def violation(rule: str, cite: RuleSource | None, message: str,
                  *path: str | int) -> None:
        why = f" ({cite.cite(rule)})" if cite is not None else ""
        out.append(src.at(f"{message}{why}", *path, kind="Workload", name=w.id))

    limit, cite = rules["max_gpus_per_workload"]
    total = spec.replicas * spec.resources.gpu.count
    if isinstance(limit, int) and total > limit:
        violation("max_gpus_per_workload", cite,
                  f"workload requests {spec.replicas} x {spec.resources.gpu.count} = "
                  f"{total} GPUs, over the limit of {limit} per workload",
                  "spec", "resources", "gpu", "count")
    limit, cite = rules["max_replicas"]
    if isinstance(limit, int) and spec.replicas > limit:
        violation("max_replicas", cite,
                  f"replicas {spec.replicas} is over the limit of {limit}", "spec", "replicas")
    allowed, cite = rules["allowed_flavours"]
    if isinstance(allowed, tuple):
        for i, f in enumerate(spec.resources.gpu.flavours):
            if f not in allowed:
                violation("allowed_flavours", cite,
                          f"flavour {f} is not allowed (allowed: {', '.join(allowed) or 'none'})",
                          "spec", "resources", "gpu", "flavours", i)
    required, cite = rules["required_labels"]
    if isinstance(required, tuple):
        for key in required:
            if not w.metadata.labels.get(key):
                violation("required_labels", cite,
                          f"label {key} is required and missing", "metadata", "labels")
    registries, cite = rules["allowed_registries"]
    if isinstance(registries, tuple) and not image_allowed(spec.image, registries):
        violation("allowed_registries", cite,
                  f"image {spec.image} ({image_repository(spec.image)}) is not from an "
                  f"allowed registry ({', '.join(registries) or 'none'})", "spec", "image")
    return out


def image_repository(image: str) -> str:
    """The fully qualified repository of an image reference, without tag or digest.

    Docker's rules: the first component is a registry host only if it has a `.` or `:`
    or is `localhost`; otherwise the image is on Docker Hub (`ubuntu` is
    `docker.io/library/ubuntu`). Host names compare case-insensitively.
    """
    name = image.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name = name[:colon]
    first, sep, rest = name.partition("/")
    if not sep:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return f"{first.lower()}/{rest}"


def image_allowed(image: str, registries: Iterable[str]) -> bool:
    """Whether `image` comes from one of `registries` (a host or host/path prefix).

    Matching is by whole path components, so `registry.internal` does not allow
    `registry.internal.evil.example/x`; a string that is no image reference
    (`fleet.imageref`: a newline, a space, `..`) comes from no registry.
    """
    if image_reference_problem(image) is not None:
        return False
    repo = image_repository(image)
    for allowed in registries:
        a = allowed.strip("/")
        host, sep, path = a.partition("/")
        a = f"{host.lower()}{sep}{path}"
        if repo == a or repo.startswith(f"{a}/"):
            return True
    return False
