"""`opsrunner demo`: lab hosts, audit → enforce → audit, the compliance summary and a report."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path
from typing import Any

import typer

from opsrunner import config, paths


def _scores_line(label: str, summary: dict[str, Any]) -> str:
    """One line of effective (and raw) percentages from `summary_json` figures."""
    overall: dict[str, dict[str, Any]] = summary.get("overall", {})

    def pct(key: str) -> str:
        figure = overall.get(key)
        return (
            "   n/a" if not figure or figure.get("percent") is None else f"{figure['percent']:6.1f}"
        )

    return (
        f"{label:<16} automated {pct('effective/automated')}  manual {pct('effective/manual')}"
        f"  all {pct('effective/all')}  (raw all {pct('raw/all').strip()})"
    )


def demo(
    hosts: int = typer.Option(3, "--hosts", "-n", min=1, max=10, help="Lab hosts to boot."),
    lab_name: str = typer.Option(
        "demo", "--lab", help="Lab name (its bridge, hosts and inventory)."
    ),
    keep_lab: bool = typer.Option(
        False,
        "--keep-lab",
        help="Leave the lab running afterwards (`opsrunner lab down --name demo`).",
    ),
    plain: bool = typer.Option(False, "--plain", help="Plain progress lines even on a terminal."),
) -> None:
    """Boot lab hosts; audit, enforce, back up and restore, audit; print the summary and report."""
    import json

    from opsrunner.lab.core import Lab
    from opsrunner.lab.net import LabError
    from opsrunner.policy import load_policy
    from opsrunner.runner import RunError, Store, compliance_summary, run
    from opsrunner.runner.progress import PlainReporter, for_terminal

    policy = load_policy()
    lab = Lab(lab_name)
    typer.secho(
        f"== lab: booting {hosts} Debian hosts under systemd-nspawn ({lab_name})", bold=True
    )
    try:
        booted = lab.up(hosts)
    except LabError as exc:
        typer.secho(f"lab: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    for name, info in booted.items():
        typer.echo(f"   {name:<8} {info.address:<15} {', '.join(info.groups)}")
    settings = config.load(None, inventory=str(lab.inventory_path))
    state = config.state_dir(settings)
    _backup_secret(state)
    reporter = PlainReporter() if plain else for_terminal()
    lines: list[str] = []
    records = []
    try:
        with Store.open(settings.store, state) as store:
            # Operate jobs (a backup, then a restore drill) sit between enforce and the final
            # audit: backups are made on purpose, not by enforcing configuration.
            steps = (
                ("audit (before)", "audit", None),
                ("enforce", "enforce", None),
                ("operate backup", "operate", "backup"),
                ("operate restore", "operate", "restore_test"),
                ("audit (after)", "audit", None),
            )
            for step, mode, job in steps:
                typer.secho(f"== {step}", bold=True)
                try:
                    record = run(
                        mode,
                        lab.inventory_path,
                        store=store,
                        settings=settings,
                        reporter=reporter,
                        job=job,
                    )
                except RunError as exc:
                    typer.secho(f"{step}: {exc}", fg="red", err=True)
                    raise typer.Exit(1) from exc
                if mode == "operate":
                    typer.echo(f"{step:<16} run {record.ident} {record.status}")
                    continue
                records.append(record)
                summary = json.loads(compliance_summary(store, record.ident, policy, as_json=True))
                lines.append(_scores_line(step, summary) + f"  run {record.ident} {record.status}")
                typer.echo(lines[-1])
            final = compliance_summary(store, records[-1].ident, policy)
    finally:
        if not keep_lab:
            typer.secho(f"== lab: tearing down {lab_name}", bold=True)
            lab.down()
    typer.echo(final)
    report = _write_report(state, records[-1].ident, lines, final, records[-1].ended_at)
    typer.secho("== scores (effective; raw ignores waivers)", bold=True)
    for line in lines:
        typer.echo(line)
    typer.secho(f"report: {report}", bold=True)


def _backup_secret(state: Path) -> None:
    """The demo's restic password: a random root-only file, named to the backup role by path.

    The backup role reads the secret from the file `$OPSRUNNER_BACKUP_PASSWORD_FILE` names and
    never from the environment itself (ansible-runner keeps the environment in its artifacts).
    An operator's own setting wins.
    """
    if os.environ.get("OPSRUNNER_BACKUP_PASSWORD_FILE"):
        return
    secret = state / "secrets" / "demo-backup.pass"
    if not secret.exists():
        secret.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    os.environ["OPSRUNNER_BACKUP_PASSWORD_FILE"] = str(secret)


def _write_report(
    state: Path, ident: str, lines: list[str], summary: str, ended: dt.datetime | None
) -> Path:
    """A plain Markdown report of the demo; rendered reports (HTML, JUnit, …) are a later issue."""
    reports = paths.project_root() / "reports"
    reports.mkdir(exist_ok=True)
    target = reports / f"demo-{ident}.md"
    stamp = (ended or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat(timespec="seconds")
    body = [
        "# opsrunner demo: compliance after audit → enforce → audit",
        "",
        f"As of {stamp} (UTC), final run `{ident}`; store under `{state}`.",
        "",
        "```",
        *lines,
        "```",
        "",
        "```",
        summary.rstrip(),
        "```",
        "",
    ]
    tmp = target.with_suffix(".tmp")
    tmp.write_text("\n".join(body), encoding="utf-8")
    tmp.replace(target)
    return target
