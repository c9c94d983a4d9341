"""Errors of the Kubernetes side, translated from library errors at the adapter.

    ClusterError                     base; `.cluster` names the cluster
    ├── PermanentError               retrying the same request cannot help
    │   ├── KubeconfigError          missing file or context, malformed kubeconfig
    │   │   └── ExecPluginRefused    exec / auth-provider plugin, not allowed by flag
    │   ├── Unauthorized             401: wrong or expired credentials
    │   ├── Forbidden                403
    │   ├── NotFound                 404
    │   ├── AlreadyExists            409 AlreadyExists
    │   ├── Conflict                 409 Conflict (stale resourceVersion, apply conflict)
    │   ├── Invalid                  422 (immutable field, bad name); `.causes` per field
    │   └── BadRequest               400 and other 4xx
    └── TransientError               may succeed later; `.retry_after` in seconds if known
        ├── Throttled                429 (Retry-After honoured)
        ├── ServerError              5xx
        ├── Unreachable              connection refused/reset, DNS, timeout
        └── WatchExpired             410 Gone on a watch: re-list, then watch again

The adapter retries transient errors itself (finite, jittered, honouring Retry-After)
and raises them only when its budget is spent; the loop above it then backs off per key.
"""

from __future__ import annotations

from typing import Any


class ClusterError(Exception):
    def __init__(self, message: str, *, cluster: str = "", status: int | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cluster = cluster
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        prefix = f"{self.cluster}: " if self.cluster else ""
        return f"{prefix}{self.message}"


class PermanentError(ClusterError):
    pass


class KubeconfigError(PermanentError):
    pass


class ExecPluginRefused(KubeconfigError):
    pass


class Unauthorized(PermanentError):
    pass


class Forbidden(PermanentError):
    pass


class NotFound(PermanentError):
    pass


class AlreadyExists(PermanentError):
    pass


class Conflict(PermanentError):
    pass


class Invalid(PermanentError):
    def __init__(self, message: str, *, causes: list[dict[str, Any]] | None = None,
                 **kw: Any) -> None:
        super().__init__(message, **kw)
        self.causes = causes or []


class RecreateNeeded(Invalid):
    """The server refuses a change to a running Job in place, and its workload's policy
    (`recreate: never`) forbids deleting it: the Job keeps running as it was."""


class BadRequest(PermanentError):
    pass


class TransientError(ClusterError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Throttled(TransientError):
    pass


class ServerError(TransientError):
    pass


class Unreachable(TransientError):
    pass


class WatchExpired(TransientError):
    pass


def from_status(status: int, body: dict[str, Any] | None, cluster: str,
                retry_after: float | None = None) -> ClusterError:
    """Our error for an HTTP status and its v1 Status body."""
    body = body or {}
    reason = body.get("reason") if isinstance(body.get("reason"), str) else None
    message = str(body.get("message") or f"HTTP {status}")
    kw: dict[str, Any] = {"cluster": cluster, "status": status, "reason": reason}
    if status == 401:
        return Unauthorized(message, **kw)
    if status == 403:
        return Forbidden(message, **kw)
    if status == 404:
        return NotFound(message, **kw)
    if status == 409:
        if reason == "AlreadyExists":
            return AlreadyExists(message, **kw)
        return Conflict(message, **kw)
    if status == 410:
        return WatchExpired(message, **kw)
    if status == 422:
        details = body.get("details") if isinstance(body.get("details"), dict) else {}
        causes = details.get("causes") if isinstance(details, dict) else None
        return Invalid(message, causes=causes if isinstance(causes, list) else [], **kw)
    if status == 429:
        return Throttled(message, retry_after=retry_after, **kw)
    if status >= 500:
        return ServerError(message, retry_after=retry_after, **kw)
    return BadRequest(message, **kw)
