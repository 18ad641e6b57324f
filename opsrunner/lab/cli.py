"""`opsrunner lab …`: boot, inspect and tear down lab hosts."""

from __future__ import annotations

import typer

app = typer.Typer(help="Disposable real Debian lab hosts (systemd-nspawn over SSH).", no_args_is_help=True)
