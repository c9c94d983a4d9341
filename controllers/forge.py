"""Talking to the forge (GitHub, GitLab, Gitea): one sticky PR comment and commit statuses.

The pull request is where a fleet change is understood, so `fleet plan --post` writes
the plan there, and the controller reports each cluster's rollout on the merged commit.
Two rules shape this module:

- **One comment per PR, updated in place.** The plan comment starts with a hidden
  marker (`<!-- aifleet-plan -->`); each push finds it (following the forge's
  pagination) and edits it, instead of burying the thread in one comment per push
  (what Atlantis and Terraform Cloud do too). Only a comment that *starts* with the
  marker counts, so a reviewer quoting the plan is never overwritten.
- **One status context per cluster.** After merge, `CommitStatusPoster` sets
  `aifleet/<cluster>` per cluster, so clusters do not overwrite each other's status (the
  Flux notification-controller #194 failure, where every cluster shared one context).

Tokens come from the environment (`GITHUB_TOKEN`, `GITLAB_TOKEN`, `GITEA_TOKEN`). They go
into one request header and nowhere else: never into an error message, a log event, a
URL or a repr. Pagination links that point to another host are not followed, so a
token is never sent off the forge.

What differs between forges (paths, auth header, status vocabulary, page size) is one
small class each (`GitHub`, `GitLab`, `Gitea`) behind the `Forge` protocol;
`ForgeClient` holds what they share: retries, pagination, errors, the sticky comment.

Errors, translated from httpx (`raise ... from e`):

    ForgeError               base; the message says forge, method, path and what to do
    ├── ForgeAuthError       401/403: the token is missing, wrong or lacks a scope
    ├── ForgeNotFound        404: no such repo, PR or commit (or the token cannot see it)
    └── ForgeUnavailable     5xx, 429 or connection failure after retries (transient)

Retries live here (and in the controller's loop), nowhere else: 3 attempts with
backoff for 5xx, 429 and connection errors, honouring Retry-After.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import quote, urlsplit

import httpx
import structlog
from anyio import to_thread

log = structlog.get_logger()

ForgeKind = Literal["github", "gitlab", "gitea"]
StatusState = Literal["pending", "success", "failure", "error"]
MARKER = "<!-- aifleet-plan -->"
PLAN_CONTEXT = "aifleet/plan"
MAX_COMMENT = 65_000
"""GitHub refuses comments over 65,536 characters; GitLab and Gitea allow more."""
_ATTEMPTS = 3


class ForgeError(Exception):
    """The forge refused or failed a request; permanent unless a subclass says otherwise."""

    transient = False


class ForgeAuthError(ForgeError):
    pass


class ForgeNotFound(ForgeError):
    pass


class ForgeUnavailable(ForgeError):
    transient = True


@dataclass(frozen=True, slots=True)
class CommentResult:
    id: int
    created: bool
    """True when no sticky comment existed and one was created."""


class Forge(Protocol):
    """What one forge's REST API looks like; `ForgeClient` does the talking."""

    token_env: ClassVar[str]
    """The environment variable holding the token (never a flag or a file)."""
    api_env: ClassVar[tuple[str, ...]]
    """Environment variables CI sets to the API's URL, first set wins."""
    default_api: ClassVar[str | None]
    edit_method: ClassVar[str]
    """The method that edits a comment in place."""
    page_query: ClassVar[str]
    """The query asking for the largest page the forge serves."""

    def headers(self, token: str) -> dict[str, str]: ...
    def comments_path(self, repo: str, number: int) -> str: ...
    def comment_path(self, repo: str, number: int, comment_id: int) -> str: ...
    def status_path(self, repo: str, sha: str) -> str: ...
    def status_payload(self, state: StatusState, context: str,
                       description: str) -> dict[str, Any]: ...
    def refusal(self, r: httpx.Response, where: str, detail: str) -> ForgeError | None:
        """A forge-specific meaning of an error answer, or None for the common ones."""
        ...


class GitHub:
    token_env: ClassVar[str] = "GITHUB_TOKEN"
    api_env: ClassVar[tuple[str, ...]] = ("GITHUB_API_URL",)
    default_api: ClassVar[str | None] = "https://api.github.com"
    edit_method: ClassVar[str] = "PATCH"
    page_query: ClassVar[str] = "per_page=100"

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28"}

    def repo_path(self, repo: str) -> str:
        owner, _, name = repo.partition("/")
        return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"

    def comments_path(self, repo: str, number: int) -> str:
        return f"{self.repo_path(repo)}/issues/{number}/comments"

    def comment_path(self, repo: str, number: int, comment_id: int) -> str:
        return f"{self.repo_path(repo)}/issues/comments/{comment_id}"

    def status_path(self, repo: str, sha: str) -> str:
        return f"{self.repo_path(repo)}/statuses/{sha}"

    def status_payload(self, state: StatusState, context: str,
                       description: str) -> dict[str, Any]:
        return {"state": state, "context": context, "description": description}

    def refusal(self, r: httpx.Response, where: str, detail: str) -> ForgeError | None:
        return None


class Gitea(GitHub):
    """Gitea speaks GitHub's paths and payloads, with its own token header and pages."""

    token_env: ClassVar[str] = "GITEA_TOKEN"
    api_env: ClassVar[tuple[str, ...]] = ("GITEA_API_URL",)
    default_api: ClassVar[str | None] = None
    page_query: ClassVar[str] = "limit=50"

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"token {token}", "Accept": "application/json"}


class GitLab:
    token_env: ClassVar[str] = "GITLAB_TOKEN"
    api_env: ClassVar[tuple[str, ...]] = ("CI_API_V4_URL",)
    default_api: ClassVar[str | None] = "https://gitlab.com/api/v4"
    edit_method: ClassVar[str] = "PUT"
    page_query: ClassVar[str] = "per_page=100"
    STATES: ClassVar[dict[StatusState, str]] = {
        "pending": "pending", "success": "success", "failure": "failed", "error": "failed"}

    def headers(self, token: str) -> dict[str, str]:
        return {"PRIVATE-TOKEN": token, "Accept": "application/json"}

    def repo_path(self, repo: str) -> str:
        return f"/projects/{quote(repo, safe='')}"

    def comments_path(self, repo: str, number: int) -> str:
        return f"{self.repo_path(repo)}/merge_requests/{number}/notes"

    def comment_path(self, repo: str, number: int, comment_id: int) -> str:
        return f"{self.comments_path(repo, number)}/{comment_id}"

    def status_path(self, repo: str, sha: str) -> str:
        return f"{self.repo_path(repo)}/statuses/{sha}"

    def status_payload(self, state: StatusState, context: str,
                       description: str) -> dict[str, Any]:
        return {"state": self.STATES[state], "name": context, "description": description}

    def refusal(self, r: httpx.Response, where: str, detail: str) -> ForgeError | None:
        # GitLab refuses to set a status to the state it already has: that is done.
        if r.status_code == 400 and "transition" in detail:
            return _SameState(where)
        return None


FORGE: dict[ForgeKind, Forge] = {"github": GitHub(), "gitlab": GitLab(), "gitea": Gitea()}
"""Every forge `--post` and `--forge` accept, by name."""


@dataclass(slots=True)
class ForgeClient:
    """A forge's REST API for one repository (GitHub/Gitea `owner/name`, GitLab project)."""

    kind: ForgeKind
    api_url: str
    repo: str
    token: str = field(repr=False)
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=20))
    sleep: Callable[[float], None] = time.sleep

    @property
    def forge(self) -> Forge:
        return FORGE[self.kind]

    # ------------------------------------------------------------------ operations

    def upsert_comment(self, number: int, body: str, marker: str = MARKER) -> CommentResult:
        """Edit the PR's comment that starts with `marker`, or create it; returns its id."""
        if not body.startswith(marker):
            body = f"{marker}\n{body}"
        body = fit_comment(body)
        comments = self.forge.comments_path(self.repo, number)
        existing = next((c for c in self._list(comments)
                         if str(c.get("body") or "").startswith(marker)), None)
        if existing is not None:
            cid = int(existing["id"])
            self._request(self.forge.edit_method,
                          self.forge.comment_path(self.repo, number, cid), json={"body": body})
            log.info("forge_comment_updated", forge=self.kind, repo=self.repo, pr=number,
                     comment=cid)
            return CommentResult(cid, created=False)
        r = self._request("POST", comments, json={"body": body})
        cid = int(r.json()["id"])
        log.info("forge_comment_created", forge=self.kind, repo=self.repo, pr=number,
                 comment=cid)
        return CommentResult(cid, created=True)

    def set_status(self, sha: str, state: StatusState, context: str, description: str,
                   target_url: str | None = None) -> None:
        """Set commit status `context` on `sha` (GitHub/Gitea `context`, GitLab `name`)."""
        desc = description if len(description) <= 140 else description[:139] + "…"
        payload = self.forge.status_payload(state, context, desc)
        if target_url:
            payload["target_url"] = target_url
        with contextlib.suppress(_SameState):  # it already has that state: done
            self._request("POST", self.forge.status_path(self.repo, sha), json=payload)
        log.info("forge_status_set", forge=self.kind, repo=self.repo, sha=sha,
                 context=context, state=state)

    # ------------------------------------------------------------------ transport

    def _list(self, path: str) -> Iterator[dict[str, Any]]:
        sep = "&" if "?" in path else "?"
        url: str | None = f"{self.api_url.rstrip('/')}{path}{sep}{self.forge.page_query}"
        host = urlsplit(self.api_url).netloc
        while url is not None:
            r = self._request("GET", url)
            items = r.json()
            if not isinstance(items, list):
                raise ForgeError(f"{self.kind}: GET {_path(url)} did not return a list")
            yield from (i for i in items if isinstance(i, dict))
            nxt = r.links.get("next", {}).get("url")
            url = nxt if nxt and urlsplit(nxt).netloc == host else None

    def _request(self, method: str, path_or_url: str, json: Any = None) -> httpx.Response:
        url = path_or_url if "://" in path_or_url else f"{self.api_url.rstrip('/')}{path_or_url}"
        where = f"{self.kind}: {method} {_path(url)}"
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                r = self.client.request(method, url, json=json,
                                        headers=self.forge.headers(self.token))
            except httpx.TransportError as e:
                if attempt == _ATTEMPTS:
                    raise ForgeUnavailable(f"{where}: {type(e).__name__}, gave up after "
                                           f"{_ATTEMPTS} attempts") from e
                self.sleep(2.0 ** attempt)
                continue
            log.debug("forge_request", forge=self.kind, method=method, path=_path(url),
                      status=r.status_code)
            if r.status_code == 429 or r.status_code >= 500:
                if attempt == _ATTEMPTS:
                    raise ForgeUnavailable(f"{where}: HTTP {r.status_code}, gave up after "
                                           f"{_ATTEMPTS} attempts")
                self.sleep(_retry_after(r.headers, 2.0 ** attempt))
                continue
            if r.is_success:
                return r
            raise self._error(r, where)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, r: httpx.Response, where: str) -> ForgeError:
        env = self.forge.token_env
        detail = _detail(r)
        special = self.forge.refusal(r, where, detail)
        if special is not None:
            return special
        if r.status_code in (401, 403):
            return ForgeAuthError(
                f"{where}: HTTP {r.status_code} {detail}: the token in {env} was refused or "
                "lacks a permission (comments need pull-request/issue write, statuses need "
                "commit-status write)")
        if r.status_code == 404:
            return ForgeNotFound(
                f"{where}: HTTP 404: no such repository, pull request or commit, or the "
                f"token in {env} cannot see it")
        return ForgeError(f"{where}: HTTP {r.status_code} {detail}")


class _SameState(ForgeError):
    """GitLab's 400 'Cannot transition status via :x from :x': it already has that state."""


def fit_comment(body: str, limit: int = MAX_COMMENT) -> str:
    """Cut a comment the forge would refuse at a line boundary, saying so."""
    if len(body) <= limit:
        return body
    note = ("\n\n</details>\n\n**The plan is too long for a comment and was cut here.** "
            "Run `fleet plan --base ... --head ...` for all of it.\n")
    cut = body.rfind("\n", 0, limit - len(note))
    return body[: max(cut, 0)] + note


def client_from_env(kind: ForgeKind, repo: str, api_url: str | None = None,
                    env: Mapping[str, str] | None = None) -> ForgeClient:
    """A ForgeClient with the token from the environment; ForgeAuthError if none is set."""
    env = os.environ if env is None else env
    forge = FORGE[kind]
    token = env.get(forge.token_env, "")
    if not token:
        raise ForgeAuthError(f"{kind}: no token: set {forge.token_env} (it is read from the "
                             "environment only, never from a flag or a file)")
    url = api_url or next((env[k] for k in forge.api_env if env.get(k)), None) \
        or forge.default_api
    if not url:
        raise ForgeError(f"{kind}: no API URL: pass --forge-url or set "
                         f"{' or '.join(forge.api_env)} (e.g. https://gitea.example/api/v1)")
    return ForgeClient(kind, url, repo, token)


class CommitStatusPoster:
    """The controller's rollout report on a merged commit: one status per cluster.

    Context `aifleet/<cluster>`, so each cluster has its own check on the forge. A status
    is posted only when it changes (the reconcile loop calls this every pass); a failure
    to post is logged and retried on the next change, never allowed to stop a rollout.
    """

    def __init__(self, client: ForgeClient, prefix: str = "aifleet") -> None:
        self.client = client
        self.prefix = prefix
        self._last: dict[tuple[str, str], tuple[StatusState, str]] = {}

    def context(self, cluster: str) -> str:
        return f"{self.prefix}/{cluster}"

    def post(self, sha: str, cluster: str, state: StatusState, description: str) -> bool:
        """Post the cluster's status on `sha` unless it is already that; True if posted."""
        key = (sha, cluster)
        if self._last.get(key) == (state, description):
            return False
        try:
            self.client.set_status(sha, state, self.context(cluster), description)
        except ForgeError as e:
            log.warning("forge_status_failed", cluster=cluster, sha=sha, error=str(e))
            return False
        self._last[key] = (state, description)
        return True

    async def post_async(self, sha: str, cluster: str, state: StatusState,
                         description: str) -> bool:
        """`post` from the controller's event loop; httpx's sync client runs in a thread."""
        return await to_thread.run_sync(self.post, sha, cluster, state, description)


def _path(url: str) -> str:
    """The URL's path for messages and logs (no query, no host credentials)."""
    return urlsplit(url).path


def _retry_after(headers: Mapping[str, str], default: float) -> float:
    raw = headers.get("retry-after", "")
    try:
        return min(max(float(raw), 0.0), 60.0)
    except ValueError:
        return default


def _detail(r: httpx.Response) -> str:
    try:
        doc = r.json()
    except ValueError:
        return r.reason_phrase
    if isinstance(doc, dict):
        msg = doc.get("message") or doc.get("error") or ""
        return f"{r.reason_phrase}: {msg}"[:300] if msg else r.reason_phrase
    return r.reason_phrase
