"""List responses: `<Kind>List` documents with selectors and `limit`/`continue` pages.

A list carries the store's current resourceVersion, which a client then watches from.
Pages are ordered by (namespace, name), as etcd keys are; the continue token is opaque
to clients (base64 JSON of the list's resourceVersion and the last key served) and
expires with the watch history window: a token older than the window is a 410 Expired,
as an etcd compaction makes it on a real server. Unlike the real server, later pages
show the objects as they are now, not as they were at the first page's version.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clusters.sim.errors import SimError, bad_request
from clusters.sim.resources import Resource
from clusters.sim.selectors import Matcher

if TYPE_CHECKING:
    from clusters.sim.store import Store


def parse_bool(value: str | None) -> bool:
    """Query booleans as the API server converts them (apimachinery's
    Convert_Slice_string_To_bool): absent, "0" or "false" in any case is false; any
    other value, the empty string included, is true."""
    if value is None:
        return False
    return not (value == "0" or value.lower() == "false")


def strip_type(obj: dict[str, Any]) -> dict[str, Any]:
    """A list item: the real server omits each item's apiVersion and kind."""
    return {k: v for k, v in obj.items() if k != "apiVersion" and k != "kind"}


def _encode(rv: int, ns: str, name: str) -> str:
    raw = json.dumps({"rv": rv, "start": [ns, name]}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str) -> tuple[int, tuple[str, str]]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        return int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error) as e:
        raise bad_request(f"continue key is not valid: {e}") from e


def list_response(store: Store, res: Resource, ns: str | None, matcher: Matcher | None,
                  query: Mapping[str, str]) -> dict[str, Any]:
    items = store.list(res, ns, matcher)
    list_rv = store.rv
    token = query.get("continue")
    if token:
        rv, after = _decode(token)
        if rv < store.compacted:
            raise SimError(410, "Expired",
                           "The provided continue parameter is too old to display a "
                           "consistent list result. You can start a new list without the "
                           "continue parameter, or use the continue token in this response "
                           "to retrieve the remainder of the results.", {})
        list_rv = rv
        items = [o for o in items
                 if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > after]
    meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
    limit_text = query.get("limit")
    if limit_text:
        try:
            limit = int(limit_text)
        except ValueError as e:
            raise bad_request(f"limit: invalid value {limit_text!r}") from e
        if 0 < limit < len(items):
            last = items[limit - 1]["metadata"]
            meta["continue"] = _encode(list_rv, last.get("namespace", ""), last["name"])
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
    return {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": meta,
            "items": [strip_type(o) for o in items]}
