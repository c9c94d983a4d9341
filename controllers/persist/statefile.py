"""Small JSON files the controller keeps in its state directory across restarts.

Each is versioned plain JSON (not a pickle stamped with the code version: an upgrade is
a restart, and these must survive it), written atomically (a crash leaves the old file
or the new one, never half of one) and owner-only. Reading one that is missing gives
None; one that cannot be used (damaged, another version) gives None with a warning, and
the caller goes on as if it were missing.

- `last-plan.json` (`controllers.persist.lastplan`): the last plan's placements;
- `retiring.json` (`Manager`): removed clusters still being drained, with how to reach
  them (a kubeconfig path and context; never a secret);
- `held.json` (`controllers.runtime.deletions`): a commit whose deletions are held, so that a
  restart does not apply it;
- `suspended.json` (`controllers.runtime.suspension`): suspended workloads and clusters;
- `adopted.json` (`controllers.runtime.deletions`): the last commit adopted.

With a home cluster, the leader keeps each of these in it as well, and that copy wins
(`controllers.runtime.handover`, `controllers.persist.sharedstate`): the state dir is
then a cache, and a replica that takes over (even a new pod) decides as the leader did.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import structlog

from clusters.kubeconfig import ConnectionSpec

log = structlog.get_logger()


def write(path: Path, version: int, body: dict[str, Any]) -> None:
    """`{"version": version, **body}` to `path`, atomically and owner-only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": version, **body}, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(path: Path, version: int) -> dict[str, Any] | None:
    """The document at `path` when it is this version's, else None."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        unusable(path, e)
        return None
    if not isinstance(doc, dict) or doc.get("version") != version:
        found = doc.get("version") if isinstance(doc, dict) else type(doc).__name__
        unusable(path, ValueError(f"version {found!r}, this controller reads {version}"))
        return None
    return doc


def unusable(path: Path, e: Exception) -> None:
    log.warning("state_file_unusable", path=str(path), error=f"{type(e).__name__}: {e}")


RETIRING = "retiring.json"


def save_retiring(state_dir: Path, clusters: dict[str, ConnectionSpec]) -> None:
    write(state_dir / RETIRING, 1, retiring_to_doc(clusters))


def load_retiring(state_dir: Path) -> dict[str, ConnectionSpec]:
    doc = read(state_dir / RETIRING, 1)
    if doc is None:
        return {}
    try:
        return retiring_from_doc(doc)
    except (AttributeError, KeyError, TypeError) as e:
        unusable(state_dir / RETIRING, e)
        return {}


def retiring_to_doc(clusters: dict[str, ConnectionSpec]) -> dict[str, Any]:
    return {"clusters": {name: {"kubeconfig": c.kubeconfig, "context": c.context,
                                "secret": c.secret}
                         for name, c in sorted(clusters.items())}}


def retiring_from_doc(doc: dict[str, Any]) -> dict[str, ConnectionSpec]:
    """AttributeError, KeyError or TypeError when `doc` is not `retiring_to_doc`'s."""
    out: dict[str, ConnectionSpec] = {}
    for name, c in doc["clusters"].items():
        kubeconfig, context = c.get("kubeconfig"), c.get("context")
        secret = c.get("secret")  # the Secret's name, never its content
        if not all(v is None or isinstance(v, str) for v in (kubeconfig, context, secret)):
            raise TypeError(f"{name}: kubeconfig, context and secret must be strings")
        out[str(name)] = ConnectionSpec(str(name), kubeconfig, context, secret)
    return out


HELD = "held.json"


def save_held(state_dir: Path, commit: str, base: str | None,
              holds: list[dict[str, str]]) -> None:
    """The commit whose deletions are held, and the applied commit it was held against."""
    write(state_dir / HELD, 1, {"commit": commit, "base": base, "holds": holds})


def load_held(state_dir: Path) -> tuple[str, str | None, list[dict[str, str]]] | None:
    doc = read(state_dir / HELD, 1)
    if doc is None:
        return None
    commit, base, holds = doc.get("commit"), doc.get("base"), doc.get("holds")
    if not isinstance(commit, str) or not (base is None or isinstance(base, str)) \
            or not isinstance(holds, list) or not all(
                isinstance(h, dict) and all(isinstance(v, str) for v in h.values())
                for h in holds):
        unusable(state_dir / HELD, TypeError("commit, base or holds of the wrong type"))
        return None
    return commit, base, holds


def clear_held(state_dir: Path) -> None:
    (state_dir / HELD).unlink(missing_ok=True)


ADOPTED = "adopted.json"


def save_adopted(state_dir: Path, commit: str) -> None:
    """The last commit this controller adopted (judged and taken, applied or not yet):
    what a restart serves before it judges a newer head."""
    write(state_dir / ADOPTED, 1, {"commit": commit})


def load_adopted(state_dir: Path) -> str | None:
    doc = read(state_dir / ADOPTED, 1)
    commit = doc.get("commit") if doc is not None else None
    if doc is not None and not isinstance(commit, str):
        unusable(state_dir / ADOPTED, TypeError("commit of the wrong type"))
        return None
    return commit
