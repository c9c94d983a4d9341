"""Every `fleet` command starts fast: building the parser imports no heavy I/O library.

`fleet --help` and `fleet validate` (what a PR check runs on every push) import every
command module to build the parser. A command that imports aiohttp, httpx or
kubernetes-asyncio at module level makes all of them pay for it (httpx alone costs
~110 ms, with rich). Import such libraries inside the handler instead.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("httpx", "aiohttp", "kubernetes_asyncio", "rich", "anyio", "structlog",
         "jsonschema", "hypothesis")


def test_building_the_cli_parser_imports_no_heavy_library() -> None:
    code = (
        "import sys, json\n"
        "from controllers.cli import build_parser\n"
        "build_parser()\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    loaded = json.loads(out.stdout)
    assert loaded == [], (
        f"building the `fleet` parser imported {loaded}: move those imports from module "
        "level into the command's handler (see this test's docstring)")


def test_version_is_printed_on_request() -> None:
    out = subprocess.run([sys.executable, "-m", "controllers.cli", "--version"],
                         capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.startswith("fleet ")
