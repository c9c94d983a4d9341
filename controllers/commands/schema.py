"""`fleet schema`: the JSON Schema of each kind, so editors can check fleet files."""

from __future__ import annotations

import argparse
import json
import sys

from fleet.models import KINDS, json_schemas

DESCRIPTION = """\
Print the JSON Schema (draft 2020-12) of the fleet repo kinds. With no KIND, prints an
object keyed by kind. Point your editor's YAML language server at one, e.g.
  fleet schema Workload > .schemas/workload.json
and in the file:  # yaml-language-server: $schema=../../.schemas/workload.json"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of each kind",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", nargs="?", choices=sorted(KINDS), metavar="KIND",
                   help=f"one of {', '.join(KINDS)} (default: all)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    schemas = json_schemas()
    out = schemas[args.kind] if args.kind else schemas
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0
