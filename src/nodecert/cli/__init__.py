"""The command line: parse, call, print."""

from nodecert.cli.commands import main

__all__ = ["main"]
