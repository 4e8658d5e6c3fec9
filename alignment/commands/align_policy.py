import typer


def register(app: typer.Typer) -> None:
    """Filled in by its owner; registers commands on `rankact align`."""
