"""The `refnet` subcommands, one module each (see refnet/cli.py); the library never imports them."""
