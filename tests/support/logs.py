"""What the controller logged, as a test counts it: the events it records are the
observable points ("a hook was received", "a pass was blocked") that a test waits on
or asserts the absence of, after a known number of them instead of after some time.

Record with `structlog.testing.capture_logs()` (the controller's loggers are not
cached, `controllers.logs`, so a capture started in a test sees them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def logged(logs: Sequence[Mapping[str, Any]], event: str, *, since: int = 0,
           **fields: Any) -> int:
    """How many `event`s were logged (from the `since`th entry on) with these fields."""
    return sum(1 for e in logs[since:] if e.get("event") == event
               and all(e.get(k) == v for k, v in fields.items()))
