"""The `opsrunner` command line: one noun-verb sub-command group per concern."""

from __future__ import annotations

import os

import typer

from opsrunner import __version__
from opsrunner.demo import demo
from opsrunner.emergency.cli import register as register_emergency
from opsrunner.lab.cli import app as lab_app
from opsrunner.notify.cli import register as register_notify
from opsrunner.policy.cli import app as policy_app
from opsrunner.policy.cli import waiver_app
from opsrunner.reports.cli import register as register_reports
from opsrunner.runner.cli import register as register_runner
from opsrunner.runner.verify import verify


def _deprecated_names(name: str) -> str:
    """Old option names that still parse, hidden from help (click applies this to every
    option token of every sub-command)."""
    if name == "policy-dir":
        typer.echo("warning: --policy-dir is deprecated, use --policy", err=True)
        return "policy"
    return name


app = typer.Typer(
    help="The operations regulation as policy-as-code: audit, enforce, operate, score, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"token_normalize_func": _deprecated_names},
)
app.add_typer(lab_app, name="lab")
app.add_typer(policy_app, name="policy")
app.add_typer(waiver_app, name="waiver")
register_runner(app)
register_reports(app)
register_emergency(app)
register_notify(app)
app.command("demo")(demo)
app.command("verify")(verify)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"opsrunner {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """opsrunner: the regulation (软件系统运营管理制度) as controls run by Ansible."""


def main() -> None:
    """Console-script entry point."""
    # Whatever opsrunner writes (store, evidence, artifacts, reports) is for its user alone.
    os.umask(0o077)
    app()
