"""The `refnet` subcommands, one module each (see refnet.cli)."""
