"""`opsrunner policy …` and `opsrunner waiver …`: validate, show, trace, export, waivers."""

from __future__ import annotations

import datetime as dt
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

import typer
import yaml
from rich.console import Console
from rich.table import Table

from opsrunner.paths import project_root
from opsrunner.policy import waivers as waiver_ops
from opsrunner.policy.checks import coverage_problems, crosscheck_problems, inventory_problems
from opsrunner.policy.cleartext import cleartext_problems, inventory_files, policy_files
from opsrunner.policy.loader import Policy, PolicyError, Problem, load_policy
from opsrunner.policy.plan_checks import plan_problems
from opsrunner.policy.schema import render_schema
from opsrunner.policy.trace import trace as trace_key

app = typer.Typer(help="Validate, show and trace the policy.", no_args_is_help=True)
waiver_app = typer.Typer(
    help="Request, approve, list and watch waivers (records reviewed in git).", no_args_is_help=True
)

_POLICY_DIR = typer.Option(
    None,
    "--policy",
    envvar="OPSRUNNER_POLICY_DIR",
    help="Policy directory (default: <project>/policy).",
    file_okay=False,
)
_ROLES_DIR = typer.Option(None, "--roles-dir", help="Roles directory (default: <project>/roles).")
_HOSTS = typer.Option([], "--host", help="Host in scope (repeatable).")
_GROUPS = typer.Option([], "--group", help="Inventory group in scope (repeatable).")
_INVENTORY = typer.Option(
    None,
    "--inventory",
    "-i",
    help="Also check this Ansible inventory (YAML file or directory with group_vars/) "
    "against the policy's tiers and groups.",
)
_DAYS = typer.Option(14, "--days", min=0, help="Look this many days ahead.")
_OUTPUT = typer.Option(
    None,
    "--output",
    "-o",
    help="Where to write (default: <project>/policy/schema.json; - for stdout).",
)


class Format(StrEnum):
    """Output formats of `policy show` and `waiver list`."""

    table = "table"
    json = "json"
    yaml = "yaml"


_FORMAT = typer.Option(Format.table, "--format", "-f", help="table, json or yaml.")


def _console() -> Console:
    # Piped output (CI logs, less) gets a wide table instead of rich's 80-column default.
    return Console() if sys.stdout.isatty() else Console(width=200)


def _fail(problems: list[Problem] | tuple[Problem, ...]) -> NoReturn:
    for problem in problems:
        typer.echo(str(problem), err=True)
    typer.echo(f"{len(problems)} problem(s) found", err=True)
    raise typer.Exit(1)


def _load(policy_dir: Path | None) -> Policy:
    try:
        return load_policy(policy_dir)
    except PolicyError as exc:
        _fail(exc.problems)


def _roles(roles_dir: Path | None, policy: Policy) -> Path:
    if roles_dir is not None:
        return roles_dir.resolve()
    sibling = policy.root.parent / "roles"
    return sibling if sibling.is_dir() else project_root() / "roles"


def _utc(text: str, what: str) -> dt.datetime:
    """Parse an ISO date or date-time; a bare date means midnight UTC; a naive time is refused."""
    try:
        if len(text) == 10:
            return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{what} {text!r} is not an ISO date (2027-01-31) or UTC time"
        ) from None
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{what} {text!r} has no time zone; end it with Z (UTC)")
    return moment.astimezone(dt.UTC)


# --- policy -----------------------------------------------------------------------------------


@app.command()
def validate(
    policy_dir: Path | None = _POLICY_DIR,
    roles_dir: Path | None = _ROLES_DIR,
    crosscheck: bool = typer.Option(
        True, "--crosscheck/--no-crosscheck", help="Check controls against role task names."
    ),
    coverage: bool = typer.Option(
        True,
        "--coverage/--no-coverage",
        help="Check every leaf clause is covered or not applicable.",
    ),
    inventory: Path | None = _INVENTORY,
) -> None:
    """Validate the policy; print every problem as file:line: field: message and exit 1 if any.

    With --inventory, also check the inventory: every host in exactly one tier group, only
    groups the policy names, no policy parameter set as an inventory variable. In both, a
    variable named like a password, secret or token must not hold a literal value.
    """
    policy = _load(policy_dir)
    problems: list[Problem] = plan_problems(policy)
    # Secrets only through ansible-vault or the environment, never in clear (issue 15).
    problems += cleartext_problems(policy_files(policy.root))
    if inventory is not None:
        problems += cleartext_problems(inventory_files(inventory))
    if coverage:
        problems += coverage_problems(policy)
    if crosscheck:
        problems += crosscheck_problems(policy, _roles(roles_dir, policy))
    inventory_summary: dict[str, Any] = {}
    if inventory is not None:
        found, inventory_summary = inventory_problems(policy, inventory)
        problems += found
    if problems:
        _fail(problems)
    automated = sum(1 for c in policy.controls if c.kind == "automated")
    typer.echo(
        f"policy valid: {len(policy.controls)} controls ({automated} automated, "
        f"{len(policy.controls) - automated} manual), {len(policy.clauses)} clauses, "
        f"{len(policy.parameters)} parameters, {len(policy.waivers)} waivers; "
        f"digest {policy.digest()}"
    )
    if inventory is not None:
        tiers = ", ".join(f"{tier} {n}" for tier, n in inventory_summary["tiers"].items())
        typer.echo(
            f"inventory valid: {inventory} — {inventory_summary['hosts']} hosts ({tiers}); "
            f"groups {', '.join(inventory_summary['groups'])}"
        )


def _document(policy: Policy) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(policy.canonical)
    data["digest"] = policy.digest()
    return data


@app.command()
def show(
    policy_dir: Path | None = _POLICY_DIR,
    fmt: Format = _FORMAT,
) -> None:
    """Show the controls (table) or the whole validated policy (json, yaml)."""
    policy = _load(policy_dir)
    if fmt is Format.json:
        typer.echo(json.dumps(_document(policy), indent=2, ensure_ascii=False, sort_keys=True))
        return
    if fmt is Format.yaml:
        typer.echo(yaml.safe_dump(_document(policy), allow_unicode=True, sort_keys=True), nl=False)
        return
    table = Table(
        title=f"{policy.settings.name} {policy.settings.version} — {len(policy.controls)} controls"
    )
    for column in ("id", "title", "kind", "role", "severity", "frequency", "owner", "source"):
        table.add_column(column)
    for control in policy.controls:
        table.add_row(
            control.id,
            control.title,
            control.kind,
            control.role or "-",
            control.severity,
            str(control.frequency),
            control.owner,
            ", ".join(control.source),
        )
    _console().print(table)


def _print_control(entry: dict[str, Any], indent: str = "") -> None:
    typer.echo(
        f"{indent}{entry['id']} [{entry['kind']}, {entry['severity']}, {entry['frequency']}] "
        f"{entry['title']}  ({entry['defined_at']})"
    )
    if entry["kind"] == "automated":
        typer.echo(f"{indent}  role {entry['role']}, tasks '{entry['task_prefix']} | …':")
        for task in entry["tasks"] or [{"file": "-", "line": 0, "name": "NO TASKS FOUND"}]:
            typer.echo(f"{indent}    {task['file']}:{task['line']}: {task['name']}")
    else:
        typer.echo(f"{indent}  evidence required: {entry['evidence_required']}")
        for att in entry["attestations"] or []:
            state = "valid" if att["valid_now"] else "not valid now"
            typer.echo(
                f"{indent}  attested by {att['attested_by']} {att['attested_at']} "
                f"until {att['valid_until']} ({state}) sha256 {att['evidence']['sha256'][:12]}…"
            )
        if not entry["attestations"]:
            typer.echo(f"{indent}  no attestation on record")
    for waiver in entry["waivers"]:
        typer.echo(
            f"{indent}  waiver {waiver['id']} {waiver['status']} until {waiver['expires_at']}"
        )
    for row in entry.get("evidence", []):
        typer.echo(
            f"{indent}  evidence {row.get('host')}: {row.get('status')} at {row.get('at')} — "
            f"{row.get('evidence', '')}"
        )


@app.command()
def trace(
    key: str = typer.Argument(..., help="A clause number (3.2.2) or a control id (BAK-003)."),
    policy_dir: Path | None = _POLICY_DIR,
    roles_dir: Path | None = _ROLES_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print the trace as JSON."),
) -> None:
    """Walk clause → controls → role/tasks (and evidence once results exist), or a control back."""
    policy = _load(policy_dir)
    try:
        result = trace_key(policy, key, _roles(roles_dir, policy))
    except KeyError:
        typer.echo(f"{key!r} is neither a clause of regulation.yml nor a control id", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    if result["kind"] == "control":
        for clause in result["clauses"]:
            heading = f" {clause['heading_zh']}" if clause["heading_zh"] else ""
            typer.echo(f"clause {clause['number']}{heading}: {clause['text']}")
        _print_control(result["control"])
        return
    clause = result["clause"]
    heading = f" {clause['heading_zh']}" if clause["heading_zh"] else ""
    typer.echo(f"clause {clause['number']}{heading}: {clause['text']}  ({clause['defined_at']})")
    if clause["not_applicable"]:
        typer.echo(f"  not applicable: {clause['not_applicable']}")
    if result["sub_clauses"]:
        typer.echo(f"  sub-clauses: {', '.join(result['sub_clauses'])}")
    if result["parameters"]:
        typer.echo(f"  parameters: {', '.join(result['parameters'])}")
    if not result["controls"] and not clause["not_applicable"]:
        typer.echo("  NO CONTROLS")
    for entry in result["controls"]:
        _print_control(entry, "  ")


@app.command()
def schema(
    output: Path | None = _OUTPUT,
) -> None:
    """Write the JSON Schema of the policy files (for editors), generated from the models."""
    text = render_schema()
    if output is not None and str(output) == "-":
        typer.echo(text, nl=False)
        return
    target = output or project_root() / "policy" / "schema.json"
    target.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {target}")


# --- waivers ----------------------------------------------------------------------------------


def _waiver_failure(exc: Exception) -> NoReturn:
    if isinstance(exc, PolicyError):
        _fail(exc.problems)
    typer.echo(f"refused: {exc}", err=True)
    raise typer.Exit(1)


@waiver_app.command("request")
def waiver_request(
    control: str = typer.Option(..., "--control", "-c", help="Control id to waive."),
    requester: str = typer.Option(..., "--requester", help="Roster user asking for the waiver."),
    justification: str = typer.Option(
        ..., "--justification", "-j", help="Why the control cannot be met."
    ),
    ticket: str = typer.Option(..., "--ticket", help="Change or risk ticket."),
    expires: str = typer.Option(
        ..., "--expires", help="Expiry, ISO date or UTC time (2027-01-31)."
    ),
    host: list[str] = _HOSTS,
    group: list[str] = _GROUPS,
    policy_dir: Path | None = _POLICY_DIR,
) -> None:
    """Record a pending waiver in waivers.yml (refuses expiry beyond waiver_max_days)."""
    policy = _load(policy_dir)
    try:
        waiver = waiver_ops.request(
            policy,
            control=control,
            hosts=host,
            groups=group,
            justification=justification,
            requester=requester,
            ticket=ticket,
            expires_at=_utc(expires, "--expires"),
        )
    except (waiver_ops.WaiverError, PolicyError, ValueError) as exc:
        _waiver_failure(exc)
    typer.echo(
        f"{waiver.id} requested for {waiver.control}; "
        f"pending approval by someone other than {requester}"
    )


@waiver_app.command("approve")
def waiver_approve(
    waiver_id: str = typer.Argument(..., help="Waiver id, e.g. WVR-2026-001."),
    approver: str = typer.Option(
        ..., "--approver", help="Roster user approving (not the requester)."
    ),
    policy_dir: Path | None = _POLICY_DIR,
) -> None:
    """Approve a pending waiver, recording the approver and time."""
    policy = _load(policy_dir)
    try:
        waiver = waiver_ops.approve(policy, waiver_id, approver)
    except (waiver_ops.WaiverError, PolicyError, ValueError) as exc:
        _waiver_failure(exc)
    typer.echo(
        f"{waiver.id} approved by {waiver.approver}; active until {waiver.expires_at.isoformat()}"
    )


def _waiver_rows(policy: Policy, items: list[Any], now: dt.datetime) -> list[dict[str, Any]]:
    return [
        {
            "id": w.id,
            "control": w.control,
            "status": w.status(now),
            "hosts": list(w.scope.hosts),
            "groups": list(w.scope.groups),
            "requester": w.requester,
            "approver": w.approver,
            "expires_at": w.expires_at.isoformat(),
            "note": f"expired on {w.expires_at.date()}, no longer applies"
            if w.status(now) == "expired"
            else "",
        }
        for w in items
    ]


def _print_waivers(rows: list[dict[str, Any]], fmt: Format, title: str) -> None:
    if fmt is Format.json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if fmt is Format.yaml:
        typer.echo(yaml.safe_dump(rows, sort_keys=False), nl=False)
        return
    table = Table(title=title)
    for column in (
        "id",
        "control",
        "status",
        "scope",
        "requester",
        "approver",
        "expires_at",
        "note",
    ):
        table.add_column(column)
    for row in rows:
        scope = ", ".join([*row["hosts"], *(f"@{g}" for g in row["groups"])])
        table.add_row(
            row["id"], row["control"], row["status"], scope, row["requester"],
            row["approver"] or "-", row["expires_at"], row["note"],
        )  # fmt: skip
    _console().print(table)


@waiver_app.command("list")
def waiver_list(
    policy_dir: Path | None = _POLICY_DIR,
    fmt: Format = _FORMAT,
    at: str | None = typer.Option(
        None, "--at", help="Evaluate status at this UTC time (default: now)."
    ),
) -> None:
    """List waivers with their status: pending, active, or expired (no longer applies)."""
    policy = _load(policy_dir)
    now = _utc(at, "--at") if at else dt.datetime.now(dt.UTC)
    _print_waivers(_waiver_rows(policy, list(policy.waivers), now), fmt, "waivers")


@waiver_app.command("expire-soon")
def waiver_expire_soon(
    days: int = _DAYS,
    policy_dir: Path | None = _POLICY_DIR,
    fmt: Format = _FORMAT,
    at: str | None = typer.Option(None, "--at", help="Evaluate at this UTC time (default: now)."),
) -> None:
    """List active waivers that expire within --days, soonest first."""
    policy = _load(policy_dir)
    now = _utc(at, "--at") if at else dt.datetime.now(dt.UTC)
    found = waiver_ops.expiring(policy, dt.timedelta(days=days), now)
    _print_waivers(_waiver_rows(policy, found, now), fmt, f"waivers expiring within {days} days")
