"""Placeholder: this command group is being built (see the issue tracker)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
