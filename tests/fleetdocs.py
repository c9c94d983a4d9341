"""Small builders of fleet repo documents (YAML text), for tests."""

from __future__ import annotations

import textwrap


def cluster(name: str = "eu-fra-1", jurisdiction: str = "DE",
            flavours: tuple[tuple[str, int, int], ...] = (("h100-80gb", 16, 8),),
            labels: str = "{tier: prod}") -> str:
    gpus = "".join(
        f"    - {{flavour: {f}, product: NVIDIA-{f.upper()}, count: {count}, "
        f"perNode: {per}, pricePerHour: 2.5}}\n"
        for f, count, per in flavours
    )
    return (
        "apiVersion: aifleet.dev/v1alpha1\n"
        "kind: Cluster\n"
        f"metadata:\n  name: {name}\n  labels: {labels}\n"
        f"spec:\n  region: r-{name}\n  jurisdiction: {jurisdiction}\n  gpus:\n{gpus}"
    )


POLICY = textwrap.dedent("""\
    apiVersion: aifleet.dev/v1alpha1
    kind: ResidencyPolicy
    metadata:
      name: default
    spec:
      groups:
        LATAM: [AR, BR, CL]
      dataClasses:
        public: {allowed: ["*"]}
        eu-personal: {allowed: [EU]}
        br-personal: {allowed: [BR]}
      default: public
    """)


def workload(name: str = "train", team: str = "nlp-team", *, namespace: str | None = None,
             data_class: str = "eu-personal", flavours: str = "[h100-80gb]",
             extra_spec: str = "", wtype: str = "training") -> str:
    ns = team if namespace is None else namespace
    return (
        "apiVersion: aifleet.dev/v1alpha1\n"
        "kind: Workload\n"
        "metadata:\n"
        f"  name: {name}\n"
        f"  namespace: {ns}\n"
        "spec:\n"
        f"  type: {wtype}\n"
        "  image: registry.internal/trainer:v1\n"
        "  replicas: 2\n"
        "  resources:\n"
        "    gpu:\n"
        "      count: 8\n"
        f"      flavours: {flavours}\n"
        "  placement:\n"
        f"    dataClass: {data_class}\n"
        f"{extra_spec}"
    )


def base_fleet() -> dict[str, str | bytes]:
    """A small valid fleet: two clusters, a policy, one workload."""
    return {
        "clusters/eu-fra-1.yaml": cluster("eu-fra-1", "DE"),
        "clusters/us-east-1.yaml": cluster("us-east-1", "US", (("h100-80gb", 32, 8),
                                                               ("a100-80gb", 16, 8))),
        "policies/residency.yaml": POLICY,
        "workloads/nlp-team/train.yaml": workload("train"),
    }
