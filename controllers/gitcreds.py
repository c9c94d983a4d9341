"""The fleet repo's credentials from `fleet run` settings: which of the three ways
(`--git-token-file`, `--git-ssh-key` + `--git-known-hosts`, a GitHub App) is given,
and why it cannot start (said once, at start, naming files and flags, never a secret).
The credentials themselves are `workloads.gitauth` ports, read again before each
fetch, so a rotated Secret needs no restart."""

from __future__ import annotations

from controllers.settings import Settings
from workloads.gitauth import GitAuth, GitAuthError, TokenFile, is_ssh, redact
from workloads.githubapp import GithubApp, load_app_key
from workloads.gitssh import SshKey

_APP_FLAGS = ("--github-app-id", "--github-app-installation-id", "--github-app-key-file")


def git_auth(settings: Settings) -> GitAuth | None:
    """The credentials the settings give (`git_auth_problem` said they are usable),
    or None: then those of the URL, if any."""
    if settings.git_token_file is not None:
        return TokenFile(settings.git_token_file, settings.git_username)
    if settings.git_ssh_key is not None and settings.git_known_hosts is not None:
        return SshKey(settings.git_ssh_key, settings.git_known_hosts)
    if settings.github_app_id and settings.github_app_installation_id and \
            settings.github_app_key_file is not None:
        return GithubApp(settings.github_app_id, settings.github_app_installation_id,
                         settings.github_app_key_file, api_url=settings.github_api_url)
    return None


def git_auth_problem(settings: Settings) -> str:
    """Why the Git credentials given cannot be used, or ""."""
    app = (settings.github_app_id, settings.github_app_installation_id,
           settings.github_app_key_file)
    given = [name for name, on in (
        ("--git-token-file", settings.git_token_file is not None),
        ("--git-ssh-key", settings.git_ssh_key is not None),
        ("--github-app-id", any(v is not None for v in app))) if on]
    if len(given) > 1:
        return f"{' and '.join(given)} are different Git credentials: give one"
    if (settings.git_ssh_key is None) != (settings.git_known_hosts is None):
        return ("--git-ssh-key and --git-known-hosts go together: an SSH host key is "
                "never trusted unseen")
    if any(v is not None for v in app) and not all(v is not None for v in app):
        missing = [flag for flag, v in zip(_APP_FLAGS, app, strict=True) if v is None]
        return f"a GitHub App needs {', '.join(missing)} too"
    ssh_repo = is_ssh(settings.repo)
    if given and (given[0] == "--git-ssh-key") != ssh_repo:
        return (f"{given[0]} does not fit --repo {redact(settings.repo)}: an SSH key is for "
                "ssh:// or user@host:path URLs, a token or GitHub App for https URLs")
    try:
        if settings.git_token_file is not None:
            TokenFile(settings.git_token_file, settings.git_username).read()
        elif settings.github_app_key_file is not None:
            load_app_key(settings.github_app_key_file)
    except GitAuthError as e:
        return str(e)
    if settings.git_ssh_key is not None and settings.git_known_hosts is not None:
        ssh = SshKey(settings.git_ssh_key, settings.git_known_hosts)
        return ssh.problem() or ssh.host_problem(settings.repo)
    return ""
