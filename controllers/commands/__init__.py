"""`fleet` subcommands, one module each, in the order `fleet --help` lists them."""

COMMANDS = ["validate", "schema", "plan", "explain", "run", "demo", "sim", "status", "ledger",
            "audit", "cost", "whatif"]
