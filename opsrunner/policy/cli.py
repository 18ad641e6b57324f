"""`opsrunner policy …`: validate, show and trace the policy."""

from __future__ import annotations

import typer

app = typer.Typer(help="Validate, show and trace the policy.", no_args_is_help=True)
waiver_app = typer.Typer(help="Request, approve, list and watch waivers (records reviewed in git).", no_args_is_help=True)
