"""The controller's read-only web page (`GET /`): one self-contained HTML file.

No build step: plain HTML, CSS and JavaScript that read `api/v1/status` every few
seconds and draw the fleet map by region, the cluster table, the workloads that need
attention and the residency panel. Shipped as package data. Every API call goes
through the page's `api(path)` function, which sends the bearer token the user typed
(kept in `sessionStorage`) and shows a token form when the API answers 401.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def index_html() -> str:
    return files("controllers.web").joinpath("index.html").read_text(encoding="utf-8")
