"""The `rankact` command line: the console entry point (`main`) and one module per command.

It lives in the top layer so that it can name every command without a dependency running
upward unseen (`agent` never imports `alignment`)."""
from rankact.cli.main import main

__all__ = ["main"]
