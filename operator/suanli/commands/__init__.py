"""Implementations of the `suanli` subcommands (argument parsing stays in suanli.cli)."""
