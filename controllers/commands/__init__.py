"""`fleet` subcommands, one module each, in the order `fleet --help` lists them."""

COMMANDS = ["validate", "schema", "run", "demo", "status", "ledger", "audit", "cost"]
