"""Is a commit signed by a key we trust? Verified as `git verify-commit` does.

The signed payload is the commit object without its `gpgsig` header
(`pygit2.Commit.gpg_signature`, libgit2's `git_commit_extract_signature`), and the
signature is checked with the tool Git uses for its format:

- SSH (`-----BEGIN SSH SIGNATURE-----`): the allowed signers file (the format of
  git's `gpg.ssh.allowedSignersFile`: `principal[,principal] [options] keytype key`)
  gives the principals of the signing key (`ssh-keygen -Y find-principals`), then
  `ssh-keygen -Y verify -n git -f ALLOWED -I PRINCIPAL -s SIG < PAYLOAD` checks the
  signature in the `git` namespace. Key validity options (`valid-before`...) are
  checked at the time of verification, not at the committer date the signer wrote.
- OpenPGP (`-----BEGIN PGP SIGNATURE-----`): the keyring file (exported public keys,
  armored or binary) is imported into a throwaway GNUPGHOME and `gpg --verify` must
  report `GOODSIG` and `VALIDSIG` (an expired or revoked key, or a bad signature,
  refuses). Without `gpg` installed such a commit is refused, saying why.

Only the keys given are trusted: nothing from the user's own keyrings. A verdict is
data (`Verdict`), never an exception; the tools get a bounded time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pygit2

Reason = Literal["Verified", "Unsigned", "UntrustedKey", "BadSignature", "NoVerifier"]
SSH_ARMOR = b"-----BEGIN SSH SIGNATURE-----"
PGP_ARMOR = b"-----BEGIN PGP SIGNATURE-----"
TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Verdict:
    reason: Reason
    message: str
    signer: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason == "Verified"


class SignatureVerifier:
    def __init__(self, allowed_signers: Path | None = None,
                 gpg_keyring: Path | None = None) -> None:
        if allowed_signers is None and gpg_keyring is None:
            raise ValueError("a signature verifier needs allowed signers and/or a keyring")
        self.allowed_signers = allowed_signers
        self.gpg_keyring = gpg_keyring
        self._verdicts: dict[str, Verdict] = {}

    def verify(self, repo: pygit2.Repository, commit: str) -> Verdict:
        """The verdict on `commit` of `repo` (cached per commit id and key files)."""
        key = f"{commit}:{self._files_stamp()}"
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = self._verify(repo, commit)
            while len(self._verdicts) > 256:
                del self._verdicts[next(iter(self._verdicts))]
        return verdict

    def _files_stamp(self) -> str:
        out = []
        for path in (self.allowed_signers, self.gpg_keyring):
            try:
                out.append(str(path.stat().st_mtime_ns) if path is not None else "-")
            except OSError:
                out.append("missing")
        return ",".join(out)

    def _verify(self, repo: pygit2.Repository, commit: str) -> Verdict:
        try:
            obj = repo[commit]
        except (KeyError, ValueError, pygit2.GitError) as e:
            return Verdict("Unsigned", f"commit {commit[:12]} cannot be read: {e}")
        if not isinstance(obj, pygit2.Commit):
            return Verdict("Unsigned", f"{commit[:12]} is not a commit")
        signature, payload = obj.gpg_signature
        if not signature or payload is None:
            return Verdict("Unsigned", f"commit {commit[:12]} is not signed")
        sig = signature if isinstance(signature, bytes) else str(signature).encode()
        data = payload if isinstance(payload, bytes) else str(payload).encode()
        if sig.lstrip().startswith(SSH_ARMOR):
            if self.allowed_signers is None:
                return Verdict("NoVerifier", f"commit {commit[:12]} has an SSH signature "
                                             "and no --allowed-signers is given")
            return _verify_ssh(self.allowed_signers, sig, data, commit)
        if sig.lstrip().startswith(PGP_ARMOR):
            if self.gpg_keyring is None:
                return Verdict("NoVerifier", f"commit {commit[:12]} has an OpenPGP "
                                             "signature and no --gpg-keyring is given")
            return _verify_gpg(self.gpg_keyring, sig, data, commit)
        return Verdict("BadSignature", f"commit {commit[:12]} has a signature of an "
                                       "unknown format (neither SSH nor OpenPGP)")


def _run(args: list[str], stdin: bytes, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[bytes] | None:
    try:
        return subprocess.run(args, input=stdin, capture_output=True, timeout=TIMEOUT,
                              check=False, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _verify_ssh(allowed: Path, sig: bytes, payload: bytes, commit: str) -> Verdict:
    tool = shutil.which("ssh-keygen")
    if tool is None:
        return Verdict("NoVerifier", "ssh-keygen is not installed: SSH signatures cannot "
                                     "be verified")
    with tempfile.TemporaryDirectory(prefix="aifleet-sig-") as tmp:
        sig_file = Path(tmp) / "commit.sig"
        sig_file.write_bytes(sig)
        found = _run([tool, "-Y", "find-principals", "-f", str(allowed), "-s", str(sig_file)],
                     b"")
        if found is None:
            return Verdict("NoVerifier", "ssh-keygen did not answer in time")
        principals = found.stdout.decode(errors="replace").split()
        if found.returncode != 0 or not principals:
            return Verdict("UntrustedKey", f"commit {commit[:12]} is signed by an SSH key "
                                           "that is not in the allowed signers file")
        for principal in principals:
            out = _run([tool, "-Y", "verify", "-n", "git", "-f", str(allowed), "-I",
                        principal, "-s", str(sig_file)], payload)
            if out is not None and out.returncode == 0:
                return Verdict("Verified", f"commit {commit[:12]} signed by {principal} "
                                           "(SSH)", principal)
    return Verdict("BadSignature", f"commit {commit[:12]}: the SSH signature does not verify "
                                   "(the commit was changed after signing, or it was made "
                                   "for another namespace)")


def _verify_gpg(keyring: Path, sig: bytes, payload: bytes, commit: str) -> Verdict:
    tool = shutil.which("gpg")
    if tool is None:
        return Verdict("NoVerifier", "gpg is not installed: OpenPGP signatures cannot be "
                                     "verified")
    with tempfile.TemporaryDirectory(prefix="aifleet-gpg-") as home:
        os.chmod(home, 0o700)
        env = {**os.environ, "GNUPGHOME": home}
        imported = _run([tool, "--batch", "--quiet", "--import", str(keyring)], b"", env)
        if imported is None or imported.returncode != 0:
            return Verdict("NoVerifier", f"the keyring {keyring} cannot be imported")
        sig_file = Path(home) / "commit.sig"
        sig_file.write_bytes(sig)
        out = _run([tool, "--batch", "--status-fd", "1", "--verify", str(sig_file), "-"],
                   payload, env)
    if out is None:
        return Verdict("NoVerifier", "gpg did not answer in time")
    status = [line.split() for line in out.stdout.decode(errors="replace").splitlines()
              if line.startswith("[GNUPG:] ")]
    codes = {parts[1]: parts[2:] for parts in status if len(parts) > 1}
    if "GOODSIG" in codes and "VALIDSIG" in codes and out.returncode == 0:
        fpr = codes["VALIDSIG"][0] if codes["VALIDSIG"] else None
        return Verdict("Verified", f"commit {commit[:12]} signed by key {fpr} (OpenPGP)", fpr)
    if "NO_PUBKEY" in codes or "ERRSIG" in codes:
        return Verdict("UntrustedKey", f"commit {commit[:12]} is signed by an OpenPGP key "
                                       "that is not in the keyring")
    for code, why in (("EXPKEYSIG", "an expired key"), ("REVKEYSIG", "a revoked key"),
                      ("EXPSIG", "an expired signature")):
        if code in codes:
            return Verdict("BadSignature", f"commit {commit[:12]} is signed with {why}")
    return Verdict("BadSignature", f"commit {commit[:12]}: the OpenPGP signature does not "
                                   "verify")
