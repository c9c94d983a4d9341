"""`fleet` subcommands, one module each, in the order `fleet --help` lists them."""

COMMANDS = ["validate", "schema", "status", "ledger", "audit", "cost"]
