"""The version of this aifleet install, as `fleet --version`, `fleet version` and the
controller's GET /version report it."""

from __future__ import annotations


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("aifleet")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0+source"
