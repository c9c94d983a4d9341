"""Render deploy/manifests/aifleet.yaml from the Helm chart (`make manifests`).

Plain manifests for `kubectl apply -k deploy/manifests` users, rendered by the real
helm (`.cache/bin/helm` from `make kubectl`, else `helm` on PATH) with
deploy/manifests/values.yaml. `--check` exits 1 when the file is not what the chart
renders now (tests/contract/test_chart.py runs the same check).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "aifleet"
OUT = ROOT / "deploy" / "manifests" / "aifleet.yaml"
VALUES = ROOT / "deploy" / "manifests" / "values.yaml"
HEADER = ("# Rendered from deploy/helm/aifleet by `make manifests` "
          "(scripts/render_manifests.py): do not edit by hand.\n")


def helm_binary() -> str | None:
    local = ROOT / ".cache" / "bin" / "helm"
    return str(local) if local.exists() else shutil.which("helm")


def render(helm: str) -> str:
    out = subprocess.run([helm, "template", "aifleet", str(CHART), "--namespace",
                          "aifleet-system", "--values", str(VALUES)],
                         capture_output=True, text=True, check=True).stdout
    return HEADER + out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = p.parse_args(argv)
    helm = helm_binary()
    if helm is None:
        print("helm not found: run `make kubectl`", file=sys.stderr)
        return 2
    text = render(helm)
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run `make manifests`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
