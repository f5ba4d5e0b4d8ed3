"""Subcommands of the `nvf` command line, each exposing `register(app)`."""
