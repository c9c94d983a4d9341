"""Plain `env` values that look like credentials: refused by `fleet validate`.

A Workload file lives in Git, is copied into the plan, the PR comment, the ledger and
the rendered objects; a credential written there is leaked the moment it is pushed. A
Secret reference (`env: {X: {secretKeyRef: ...}}`, `envFrom: [{secretRef: ...}]`) keeps
the value in the cluster, where aifleet never reads it.

Two signals, either enough:
- the variable's name says it holds one (a part of it, between `_`, `-` or `.`, ends
  in TOKEN, PASSWORD, PASSWD, SECRET, KEY or CREDENTIAL(S)) and the value is a
  non-empty literal;
- the value has the shape of a well-known token, whatever the name (GitHub `ghp_` and
  its siblings, AWS access key ids `AKIA`/`ASIA`, Hugging Face `hf_`, OpenAI `sk-`,
  Slack `xox?-`, GitLab `glpat-`, a PEM private key).

The message names the variable, never the value: it is printed in CI logs and posted
on the pull request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_NAME = re.compile(r"(TOKEN|PASSWORD|PASSWD|SECRET|KEY|CREDENTIALS?)S?($|[-_.])",
                   re.IGNORECASE)
"""A name part that ends in one of the words: `HF_TOKEN`, `APITOKEN`, `AWS_SECRET_ACCESS_KEY`,
`DB_PASSWORD`; not `TOKENIZERS_PARALLELISM` or `KEYBOARD`."""
_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a GitHub token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b")),
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{20,}")),
    ("an OpenAI-style API key", re.compile(r"\bsk-[A-Za-z0-9_-]{20,}")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
)


def credential_problem(name: str, value: str) -> str | None:
    """Why the literal `value` of env variable `name` looks like a credential, or None.
    Never includes the value."""
    for what, shape in _SHAPES:
        if shape.search(value):
            return (f"env {name}: the value looks like {what}; a credential must not be "
                    "in Git: use `{secretKeyRef: {name: <secret>, key: <key>}}` (the "
                    "value is not shown)")
    if value and _NAME.search(name):
        return (f"env {name}: by its name this is a credential, and it has a literal "
                "value; a credential must not be in Git: use `{secretKeyRef: {name: "
                "<secret>, key: <key>}}` (the value is not shown)")
    return None


def credential_problems(env: Mapping[str, object]) -> list[tuple[str, str]]:
    """(variable, message) for every literal env value that looks like a credential,
    in name order."""
    out: list[tuple[str, str]] = []
    for name in sorted(env):
        value = env[name]
        if isinstance(value, str):
            problem = credential_problem(name, value)
            if problem is not None:
                out.append((name, problem))
    return out
