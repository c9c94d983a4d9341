"""`fleet` subcommands, one module each, in the order `fleet --help` lists them."""

COMMANDS = ["validate", "schema", "plan", "render", "explain", "run", "demo", "sim", "status",
            "get", "suspend", "resume", "sync", "wait", "cluster", "ledger", "audit", "cost",
            "whatif", "completion", "version"]
