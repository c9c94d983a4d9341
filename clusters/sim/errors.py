"""Errors of the simulated API server, each one a Kubernetes `v1 Status` on the wire.

    SimError                 base: HTTP status, reason, message, details -> `status()`
    ├── PatchError           400 BadRequest (a patch that cannot be applied), or 422
    │                        Invalid when the patched object breaks a rule
    └── ApplyConflict        409 Conflict from server-side apply: `details.causes` has
                             one FieldManagerConflict per (field, manager)

A handler raises a SimError anywhere below it; the server's error middleware renders
`status()` as the response body with the same code, as kube-apiserver does
(`k8s.io/apimachinery/pkg/api/errors`). Messages follow the real server's wording,
because clients (kubectl, kubernetes-asyncio users, our own adapter) show or match them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class SimError(Exception):
    """A failed request: `code` is the HTTP status, `reason` the Status reason."""

    def __init__(self, code: int, reason: str, message: str,
                 details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        """The `v1 Status` body the real API server sends for this error."""
        body: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message,
            "reason": self.reason, "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(kind: str | None, name: str | None, group: str | None = None,
             causes: list[dict[str, str]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if group:
        out["group"] = group
    if kind:
        out["kind"] = kind
    if causes:
        out["causes"] = causes
    return out


def not_found(resource: str, name: str, group: str = "") -> SimError:
    """404 NotFound, worded `jobs.batch "x" not found` as the real server does."""
    qual = f"{resource}.{group}" if group else resource
    return SimError(404, "NotFound", f'{qual} "{name}" not found',
                    _details(resource, name, group))


def already_exists(resource: str, name: str, group: str = "") -> SimError:
    qual = f"{resource}.{group}" if group else resource
    return SimError(409, "AlreadyExists", f'{qual} "{name}" already exists',
                    _details(resource, name, group))


def conflict(resource: str, name: str, group: str = "") -> SimError:
    """409 Conflict on a stale resourceVersion (optimistic concurrency)."""
    qual = f"{resource}.{group}" if group else resource
    return SimError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {qual} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        _details(resource, name, group))


def uid_precondition(resource: str, name: str, group: str, key: str, sent: str,
                     stored: str) -> SimError:
    """409 Conflict of a PUT naming another uid than the stored object's: the update
    carries its uid as a precondition (`rest.DefaultUpdatedObjectInfo.Preconditions`),
    which the storage's `checkPreconditions` refuses with an invalid-object
    StorageError that `InterpretUpdateError` turns into a Conflict, worded as in
    apiserver/pkg/storage/errors.go (the etcd key is best effort)."""
    qual = f"{resource}.{group}" if group else resource
    return SimError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {qual} "{name}": StorageError: invalid object, '
        f"Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: Precondition "
        f"failed: UID in precondition: {sent}, UID in object meta: {stored}",
        _details(resource, name, group))


def invalid(kind: str, name: str, causes: Sequence[tuple[str, str, str]],
            group: str = "") -> SimError:
    """422 Invalid; `causes` are (field, cause type, message) like `FieldValueInvalid`."""
    qual = f"{kind}.{group}" if group else kind
    # field.ErrorList.ToAggregate drops repeated messages; the causes keep every error.
    parts = list(dict.fromkeys(f"{field}: {msg}" for field, _t, msg in causes))
    text = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return SimError(
        422, "Invalid", f'{qual} "{name}" is invalid: {text}',
        _details(kind, name, group, [
            {"reason": t, "message": msg, "field": field} for field, t, msg in causes]))


def bad_request(message: str) -> SimError:
    return SimError(400, "BadRequest", message)


def unauthorized() -> SimError:
    return SimError(401, "Unauthorized", "Unauthorized")


def expired(message: str) -> SimError:
    """410 Expired: a watch or continue token older than the history window."""
    return SimError(410, "Expired", message)


class PatchError(SimError):
    """A patch the server cannot apply: 400 BadRequest by default, 422 if `invalid`."""

    def __init__(self, message: str, *, invalid: bool = False) -> None:
        if invalid:
            super().__init__(422, "Invalid", message)
        else:
            super().__init__(400, "BadRequest", message)


class ApplyConflict(SimError):
    """409 from server-side apply; `conflicts` are (field path, owning manager) pairs.

    The message matches kube-apiserver's (`fieldmanager/internal/conflict.go`):
    one conflict reads `Apply failed with 1 conflict: conflict with "mgr": .spec.x`;
    several are grouped per manager, managers sorted, one `- path` line each.
    """

    def __init__(self, conflicts: list[tuple[str, str]]) -> None:
        self.conflicts = list(conflicts)
        causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{mgr}"',
                   "field": path} for path, mgr in self.conflicts]
        super().__init__(409, "Conflict", self._message(), {"causes": causes})

    def _message(self) -> str:
        if len(self.conflicts) == 1:
            path, mgr = self.conflicts[0]
            return f'Apply failed with 1 conflict: conflict with "{mgr}": {path}'
        by_manager: dict[str, list[str]] = {}
        for path, mgr in self.conflicts:
            by_manager.setdefault(mgr, []).append(path)
        lines: list[str] = []
        for mgr in sorted(by_manager):
            lines.append(f'conflicts with "{mgr}":')
            lines.extend(f"- {p}" for p in by_manager[mgr])
        return f"Apply failed with {len(self.conflicts)} conflicts: " + "\n".join(lines)
