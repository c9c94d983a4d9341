"""Container image references, by the OCI distribution grammar (distribution/reference).

An image string goes verbatim into every pod the workload runs, and the registry
guardrail decides by its host: a string the grammar does not accept (a newline, a
space, `..`, an upper-case repository) could mean one thing to the guardrail and
another to the container runtime, so it is refused before either looks at it.

    reference      := name [ ":" tag ] [ "@" digest ]
    name           := [ domain "/" ] path-component [ "/" path-component ]*
    domain         := host [ ":" port ]       host: DNS name, IPv4 or [IPv6]
    path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag            := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest         := algorithm ":" [0-9a-fA-F]{32,}
    algorithm      := [A-Za-z][A-Za-z0-9]* ( [+._-] [A-Za-z][A-Za-z0-9]* )*
"""

from __future__ import annotations

import re

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = (rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
         r"|\[(?:[a-fA-F0-9:]+)\])")
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"({_NAME})(?::{_TAG})?(?:@{_DIGEST})?", re.ASCII)
MAX_NAME = 255


def image_reference_problem(image: str) -> str | None:
    """Why `image` is not an OCI image reference, or None when it is one."""
    m = _REFERENCE.fullmatch(image)
    if m is None:
        return (f"image {_shown(image)} is not an image reference "
                "([registry[:port]/]repository[:tag][@digest], repository in lower case, "
                "no spaces or control characters)")
    if len(m.group(1)) > MAX_NAME:
        return f"image repository name is over {MAX_NAME} characters"
    return None


def _shown(image: str) -> str:
    return repr(image if len(image) <= 80 else f"{image[:77]}...")
