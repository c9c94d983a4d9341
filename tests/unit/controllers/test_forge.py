"""The forge adapter against faked forge APIs (respx): the exact requests each forge gets.

Covers the sticky comment (created once, then updated in place on the next push, found
across pages), commit statuses (the plan's and one per cluster after merge), the errors
on 401/403/404, retries on 5xx with Retry-After, and that the token never shows up in
output, errors or logs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
import structlog

from controllers.forge import (
    MARKER,
    CommitStatusPoster,
    ForgeAuthError,
    ForgeClient,
    ForgeError,
    ForgeKind,
    ForgeNotFound,
    ForgeUnavailable,
    client_from_env,
    fit_comment,
)

TOKEN = "s3cr3t-token-value-1234"
GH = "https://api.github.test"
GL = "https://gitlab.test/api/v4"
GT = "https://gitea.test/api/v1"

# forge -> (api, comments list path, update method, update path for comment 7, status path)
SHAPES: dict[str, tuple[str, str, str, str, str]] = {
    "github": (GH, "/repos/acme/fleet/issues/12/comments", "PATCH",
               "/repos/acme/fleet/issues/comments/7", "/repos/acme/fleet/statuses/abc123"),
    "gitlab": (GL, "/projects/acme%2Ffleet/merge_requests/12/notes", "PUT",
               "/projects/acme%2Ffleet/merge_requests/12/notes/7",
               "/projects/acme%2Ffleet/statuses/abc123"),
    "gitea": (GT, "/repos/acme/fleet/issues/12/comments", "PATCH",
              "/repos/acme/fleet/issues/comments/7", "/repos/acme/fleet/statuses/abc123"),
}
AUTH = {
    "github": ("authorization", f"Bearer {TOKEN}"),
    "gitlab": ("private-token", TOKEN),
    "gitea": ("authorization", f"token {TOKEN}"),
}
IDS = list(SHAPES)


def make(kind: str, sleeps: list[float] | None = None) -> ForgeClient:
    api = SHAPES[kind][0]
    slept = sleeps if sleeps is not None else []
    return ForgeClient(kind, api, "acme/fleet", TOKEN,  # type: ignore[arg-type]
                       sleep=slept.append)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


@pytest.mark.parametrize("kind", IDS, ids=IDS)
def test_first_push_creates_the_sticky_comment(kind: str, logs: list[dict[str, Any]]) -> None:
    api, comments, *_ = SHAPES[kind]
    with respx.mock(assert_all_called=True) as mock:
        listing = mock.get(url__startswith=f"{api}{comments}").respond(
            200, json=[{"id": 3, "body": "LGTM"}])
        create = mock.post(f"{api}{comments}").respond(201, json={"id": 9})
        result = make(kind).upsert_comment(12, f"{MARKER}\n## Plan")
    assert result.id == 9 and result.created
    assert listing.calls.last.request.headers[AUTH[kind][0]] == AUTH[kind][1]
    req = create.calls.last.request
    assert req.method == "POST"
    assert req.headers[AUTH[kind][0]] == AUTH[kind][1]
    assert body_of(req) == {"body": f"{MARKER}\n## Plan"}
    assert TOKEN not in repr(logs)


@pytest.mark.parametrize("kind", IDS, ids=IDS)
def test_second_push_updates_the_same_comment(kind: str) -> None:
    api, comments, method, update_path, _ = SHAPES[kind]
    with respx.mock(assert_all_called=False) as mock:
        mock.get(url__startswith=f"{api}{comments}").respond(200, json=[
            {"id": 5, "body": f"> {MARKER}\n> quoted by a reviewer"},
            {"id": 7, "body": f"{MARKER}\n## Plan (first push)"},
        ])
        update = mock.route(method=method, url=f"{api}{update_path}").respond(
            200, json={"id": 7})
        post = mock.post(f"{api}{comments}").respond(201, json={"id": 99})
        result = make(kind).upsert_comment(12, "## Plan (second push)")
    assert result.id == 7 and not result.created
    assert body_of(update.calls.last.request) == {"body": f"{MARKER}\n## Plan (second push)"}
    assert not post.called


@pytest.mark.parametrize("kind", IDS, ids=IDS)
def test_sticky_comment_is_found_on_a_later_page(kind: str) -> None:
    api, comments, method, update_path, _ = SHAPES[kind]
    page2 = f"{api}{comments}?page=2"
    with respx.mock(assert_all_called=True) as mock:
        mock.get(page2).respond(200, json=[{"id": 7, "body": f"{MARKER}\nold"}])
        mock.get(url__startswith=f"{api}{comments}").respond(
            200, json=[{"id": i, "body": "chat"} for i in range(1, 4)],
            headers={"Link": f'<{page2}>; rel="next"'})
        update = mock.route(method=method, url=f"{api}{update_path}").respond(200, json={})
        make(kind).upsert_comment(12, "new")
    assert update.called


def test_pagination_never_follows_a_link_to_another_host() -> None:
    api, comments, *_ = SHAPES["github"]
    with respx.mock(assert_all_called=False) as mock:
        evil = mock.get(url__startswith="https://evil.test/").respond(200, json=[])
        mock.get(url__startswith=f"{api}{comments}").respond(
            200, json=[], headers={"Link": '<https://evil.test/steal?page=2>; rel="next"'})
        mock.post(f"{api}{comments}").respond(201, json={"id": 1})
        make("github").upsert_comment(12, "x")
    assert not evil.called


@pytest.mark.parametrize(("kind", "state", "sent"), [
    ("github", "failure", {"state": "failure", "context": "aifleet/plan",
                           "description": "2 violations", "target_url": "https://ci/1"}),
    ("gitea", "success", {"state": "success", "context": "aifleet/plan",
                          "description": "2 violations", "target_url": "https://ci/1"}),
    ("gitlab", "failure", {"state": "failed", "name": "aifleet/plan",
                           "description": "2 violations", "target_url": "https://ci/1"}),
], ids=["github", "gitea", "gitlab_maps_failure_to_failed"])
def test_commit_status_has_the_forge_shape(kind: str, state: str, sent: dict[str, str]) -> None:
    api, *_, status_path = SHAPES[kind]
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(f"{api}{status_path}").respond(201, json={})
        make(kind).set_status("abc123", state, "aifleet/plan", "2 violations",  # type: ignore[arg-type]
                              "https://ci/1")
    assert body_of(route.calls.last.request) == sent
    assert route.calls.last.request.headers[AUTH[kind][0]] == AUTH[kind][1]


def test_gitlab_status_already_in_that_state_is_not_an_error() -> None:
    api, *_, status_path = SHAPES["gitlab"]
    with respx.mock() as mock:
        mock.post(f"{api}{status_path}").respond(
            400, json={"message": "Cannot transition status via :run from :running"})
        make("gitlab").set_status("abc123", "pending", "aifleet/eu-fra-1", "rolling out")


def test_each_cluster_posts_its_own_context_and_only_on_change() -> None:
    api, *_, status_path = SHAPES["github"]
    poster = CommitStatusPoster(make("github"))
    with respx.mock() as mock:
        route = mock.post(f"{api}{status_path}").respond(201, json={})
        assert poster.post("abc123", "eu-fra-1", "pending", "applying 3 objects")
        assert poster.post("abc123", "us-east-1", "success", "synced")
        assert not poster.post("abc123", "eu-fra-1", "pending", "applying 3 objects")
        assert poster.post("abc123", "eu-fra-1", "success", "synced")
    sent = [body_of(c.request) for c in route.calls]
    assert [(b["context"], b["state"]) for b in sent] == [
        ("aifleet/eu-fra-1", "pending"), ("aifleet/us-east-1", "success"),
        ("aifleet/eu-fra-1", "success")]


async def test_status_poster_runs_from_the_event_loop() -> None:
    api, *_, status_path = SHAPES["gitea"]
    poster = CommitStatusPoster(make("gitea"))
    with respx.mock() as mock:
        route = mock.post(f"{api}{status_path}").respond(201, json={})
        assert await poster.post_async("abc123", "br-sao-1", "failure", "apply failed")
    assert body_of(route.calls.last.request)["context"] == "aifleet/br-sao-1"


def test_a_failed_status_post_does_not_stop_the_rollout(logs: list[dict[str, Any]]) -> None:
    api, *_, status_path = SHAPES["github"]
    poster = CommitStatusPoster(make("github"))
    with respx.mock() as mock:
        mock.post(f"{api}{status_path}").respond(403, json={"message": "Resource not accessible"})
        assert not poster.post("abc123", "eu-fra-1", "success", "synced")
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == ["forge_status_failed"]
    assert TOKEN not in repr(logs)


@pytest.mark.parametrize(("status", "error", "words"), [
    (401, ForgeAuthError, "token in GITHUB_TOKEN was refused"),
    (403, ForgeAuthError, "lacks a permission"),
    (404, ForgeNotFound, "no such repository, pull request or commit"),
    (422, ForgeError, "HTTP 422"),
], ids=["401", "403", "404", "422"])
def test_refusals_are_clear_errors_without_the_token(
        status: int, error: type[ForgeError], words: str, logs: list[dict[str, Any]]) -> None:
    api, comments, *_ = SHAPES["github"]
    with respx.mock() as mock:
        mock.get(url__startswith=f"{api}{comments}").respond(status, json={"message": "nope"})
        with pytest.raises(error) as info:
            make("github").upsert_comment(12, "x")
    msg = str(info.value)
    assert words in msg and "GET /repos/acme/fleet/issues/12/comments" in msg
    assert TOKEN not in msg and TOKEN not in repr(logs)


def test_server_errors_are_retried_honouring_retry_after() -> None:
    api, *_, status_path = SHAPES["github"]
    sleeps: list[float] = []
    with respx.mock() as mock:
        route = mock.post(f"{api}{status_path}")
        route.side_effect = [httpx.Response(503, headers={"Retry-After": "7"}),
                             httpx.Response(502), httpx.Response(201, json={})]
        make("github", sleeps).set_status("abc123", "success", "aifleet/plan", "ok")
    assert route.call_count == 3 and sleeps == [7.0, 4.0]


def test_persistent_outage_is_a_transient_error() -> None:
    api, *_, status_path = SHAPES["gitea"]
    with respx.mock() as mock:
        mock.post(f"{api}{status_path}").mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(ForgeUnavailable) as info:
            make("gitea").set_status("abc123", "success", "aifleet/plan", "ok")
    assert info.value.transient and "gave up after 3 attempts" in str(info.value)


@pytest.mark.parametrize(("kind", "env", "api"), [
    ("github", {"GITHUB_TOKEN": TOKEN}, "https://api.github.com"),
    ("github", {"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": "https://ghe.test/api/v3"},
     "https://ghe.test/api/v3"),
    ("gitlab", {"GITLAB_TOKEN": TOKEN, "CI_API_V4_URL": GL}, GL),
    ("gitea", {"GITEA_TOKEN": TOKEN, "GITEA_API_URL": GT}, GT),
], ids=["github_default", "github_enterprise", "gitlab_ci", "gitea"])
def test_client_reads_token_and_api_from_the_environment(
        kind: ForgeKind, env: dict[str, str], api: str) -> None:
    c = client_from_env(kind, "acme/fleet", env=env)
    assert c.api_url == api and c.token == TOKEN
    assert TOKEN not in repr(c)


def test_missing_token_names_the_variable() -> None:
    with pytest.raises(ForgeAuthError, match="set GITLAB_TOKEN"):
        client_from_env("gitlab", "acme/fleet", env={})
    with pytest.raises(ForgeError, match="GITEA_API_URL"):
        client_from_env("gitea", "acme/fleet", env={"GITEA_TOKEN": TOKEN})


def test_an_oversized_comment_is_cut_at_a_line_and_says_so() -> None:
    body = MARKER + "\n" + "\n".join("x" * 99 for _ in range(1000))
    cut = fit_comment(body, limit=10_000)
    assert len(cut) <= 10_000 and cut.startswith(MARKER)
    assert "too long for a comment" in cut


def test_a_forge_is_one_class_the_client_never_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a forge is one class and one registry entry: a Gitea-like forge with its
    own token variable and header gets the sticky comment and statuses unchanged."""
    from controllers import forge

    class Forgejo(forge.Gitea):
        token_env = "FORGEJO_TOKEN"

        def headers(self, token: str) -> dict[str, str]:
            return {"Authorization": f"forgejo {token}"}

    monkeypatch.setitem(forge.FORGE, "forgejo", Forgejo())  # type: ignore[misc]
    c = client_from_env("forgejo", "acme/fleet", GT,  # type: ignore[arg-type]
                        env={"FORGEJO_TOKEN": TOKEN})
    c.sleep = lambda _: None
    with respx.mock(assert_all_called=True) as mock:
        mock.get(url__startswith=f"{GT}/repos/acme/fleet/issues/12/comments?limit=50"
                 ).respond(200, json=[])
        create = mock.post(f"{GT}/repos/acme/fleet/issues/12/comments").respond(
            201, json={"id": 9})
        status = mock.post(f"{GT}/repos/acme/fleet/statuses/abc123").respond(201)
        assert c.upsert_comment(12, "## Plan").created
        c.set_status("abc123", "failure", "aifleet/plan", "2 pending")
    assert create.calls.last.request.headers["authorization"] == f"forgejo {TOKEN}"
    assert body_of(status.calls.last.request) == {
        "state": "failure", "context": "aifleet/plan", "description": "2 pending"}
    with pytest.raises(ForgeAuthError, match="set FORGEJO_TOKEN"):
        client_from_env("forgejo", "acme/fleet", GT, env={})  # type: ignore[arg-type]
