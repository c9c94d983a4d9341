"""`fleet schema`: the JSON Schema of each kind, so editors can check fleet files.

Also what keeps the shipped copies honest: `--write DIR` writes one file per kind
(`docs/schema/<kind>.json`, what the example fleet's `yaml-language-server` modelines
point at) and `--update-doc FILE` regenerates the field tables of docs/fleet-repo.md;
`make schema` runs both, and tests fail when either is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controllers.commands.common import fail, json_text
from fleet.models import KINDS, json_schemas, schema_file

DESCRIPTION = """\
Print the JSON Schema (draft 2020-12) of the fleet repo kinds: every field with a
description (shown by editors on hover) and examples. With no KIND, prints an object
keyed by kind.

Editors: the repo ships the schemas in docs/schema/<kind>.json; start a fleet file with
  # yaml-language-server: $schema=../../docs/schema/workload.json
(a path relative to the file, or a URL) and the YAML language server (VS Code's YAML
extension, Neovim, Helix) checks and completes it. examples/fleet/ does so.

Examples:
  fleet schema Workload
  fleet schema --write docs/schema           # refresh the shipped copies
  fleet schema --update-doc docs/fleet-repo.md   # refresh the field tables"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of each kind",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", nargs="?", choices=sorted(KINDS), metavar="KIND",
                   help=f"one of {', '.join(KINDS)} (default: all)")
    p.add_argument("--write", metavar="DIR",
                   help="write each kind's schema to DIR/<kind>.json (lower-case kind) "
                        "instead of printing")
    p.add_argument("--update-doc", metavar="FILE",
                   help="regenerate the field tables between `<!-- fields: KIND -->` and "
                        "`<!-- end fields: KIND -->` in FILE from the schemas")
    p.set_defaults(handler=run)


def dump(schema: object) -> str:
    return json_text(schema)


def run(args: argparse.Namespace) -> int:
    schemas = json_schemas()
    if args.write or args.update_doc:
        if args.write:
            out = Path(args.write)
            if not out.is_dir():
                fail(f"{out}: no such folder")
            for kind, schema in schemas.items():
                if args.kind in (None, kind):
                    (out / schema_file(kind)).write_text(dump(schema), encoding="utf-8")
        if args.update_doc:
            from controllers.schemadoc import update_doc

            path = Path(args.update_doc)
            try:
                text = path.read_text(encoding="utf-8")
                new = update_doc(text, schemas)
            except OSError as e:
                fail(f"{path}: cannot read: {e.strerror}")
            except KeyError as e:
                fail(f"{path}: a field table names {e}, which is not a kind")
            if new != text:
                path.write_text(new, encoding="utf-8")
        return 0
    sys.stdout.write(dump(schemas[args.kind] if args.kind else schemas))
    return 0
