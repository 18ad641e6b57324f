"""Run commands (`opsrunner audit|enforce|operate|runs|score|schedule|daemon|store`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the runner's commands and groups to the root command."""
    del app
