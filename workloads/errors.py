"""Errors of the Git side.

Bad *content* of a fleet repo is never an exception: it is a `fleet.diagnostics.Diagnostic`
and the rest of the repo still loads. Exceptions are for when there is nothing to read:

    WorkloadsError                 base of everything raised here
    ├── RepoNotFound               the path is not in a Git repository (permanent)
    ├── RevisionNotFound           the ref or commit does not exist (permanent)
    └── SourceUnavailable          a fetch or read failed; try again (transient)
"""

from __future__ import annotations


class WorkloadsError(Exception):
    """Base of the Git-side errors."""


class RepoNotFound(WorkloadsError):
    pass


class RevisionNotFound(WorkloadsError):
    pass


class SourceUnavailable(WorkloadsError):
    transient = True
