"""Real signed commits for tests: SSH keys from ssh-keygen, GPG keys from gpg, commits by
the `git` binary (`git commit -S`), pushed to a bare repository.

Git runs with no global or system config (`GIT_CONFIG_GLOBAL=/dev/null`), so a
developer's own signing setup never leaks in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "Fleet Admin", "GIT_AUTHOR_EMAIL": "admin@example.com",
           "GIT_COMMITTER_NAME": "Fleet Admin", "GIT_COMMITTER_EMAIL": "admin@example.com"}


def ssh_key(folder: Path, name: str) -> tuple[Path, str]:
    """A new ed25519 key without passphrase: (private key path, public key line)."""
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                    str(key)], check=True, capture_output=True)
    return key, (folder / f"{name}.pub").read_text().strip()


def allowed_signers(path: Path, *entries: tuple[str, str]) -> Path:
    """An allowed signers file: one `principal public-key` line per (principal, key)."""
    path.write_text("".join(f"{who} {pub}\n" for who, pub in entries))
    return path


class GitWork:
    """A clone of a bare repository, committed to with the git binary."""

    def __init__(self, bare: Path, path: Path, branch: str = "main") -> None:
        self.path, self.branch = path, branch
        self.env = {**os.environ, **GIT_ENV}
        subprocess.run(["git", "clone", "-q", "-b", branch, str(bare), str(path)],
                       check=True, capture_output=True, env=self.env)

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        out = subprocess.run(["git", "-C", str(self.path), *args], check=True,
                             capture_output=True, text=True, env={**self.env, **(env or {})})
        return out.stdout.strip()

    def commit(self, files: dict[str, str], message: str, *, ssh_key: Path | None = None,
               gpg_key: str | None = None, gnupghome: Path | None = None) -> str:
        """Write `files`, commit (signed with `ssh_key` or `gpg_key` when given), push;
        the new commit's sha."""
        for rel, text in files.items():
            (self.path / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.path / rel).write_text(text)
        self.git("add", "-A")
        sign: list[str] = []
        env: dict[str, str] = {}
        if ssh_key is not None:
            sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={ssh_key}"]
        elif gpg_key is not None:
            sign = ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={gpg_key}"]
            env = {"GNUPGHOME": str(gnupghome)} if gnupghome else {}
        signed = ["-S"] if sign else ["--no-gpg-sign"]
        self.git(*sign, "commit", "-q", "--allow-empty", *signed, "-m", message, env=env)
        self.git("push", "-q", "origin", f"HEAD:{self.branch}")
        return self.git("rev-parse", "HEAD")


def gpg_key(home: Path, uid: str = "Fleet Admin <admin@example.com>") -> tuple[str, bytes]:
    """A new signing key in `home` (a GNUPGHOME): (fingerprint, exported public key)."""
    home.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519",
                    "sign", "never"], check=True, capture_output=True, env=env)
    listing = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"],
                             check=True, capture_output=True, text=True, env=env).stdout
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    public = subprocess.run(["gpg", "--batch", "--armor", "--export", fpr], check=True,
                            capture_output=True, env=env).stdout
    return fpr, public


def stop_gpg_agent(home: Path) -> None:
    """The agent gpg started for `home`: stopped (by its home, never by name)."""
    if shutil.which("gpgconf"):
        subprocess.run(["gpgconf", "--kill", "all"], capture_output=True,
                       env={**os.environ, "GNUPGHOME": str(home)}, check=False)
