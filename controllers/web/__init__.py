"""The controller's read-only web page (`GET /`): one self-contained HTML file.

No build step, no CDN: plain HTML, CSS and JavaScript that read `api/v1/status` and
`api/v1/events` every few seconds (through one `api(path)` function) and draw the
clusters by jurisdiction, the cluster table (counts, reasons, failover countdown), the
workloads that need attention, the workload list with filters and drill-down, the
events timeline and the residency panel. Shipped as package data. See
docs/controller.md, "The web page and the events feed".
Every API call goes through the page's `api(path)` function, which sends the bearer
token the user typed (kept in `sessionStorage`) and shows a token form when the API
answers 401.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def index_html() -> str:
    return files("controllers.web").joinpath("index.html").read_text(encoding="utf-8")
