"""The `refnet` subcommands: one module each, with add_arguments(parser) and run(args) (refnet/cli.py)."""
