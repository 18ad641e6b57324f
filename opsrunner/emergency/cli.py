"""`opsrunner attest|incident|drill|support|survey|assess`: chapters 5 to 7 on the command line."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from opsrunner import config
from opsrunner.store import Store, StoreError

ConfigOpt = typer.Option(None, "--config", help="opsrunner.toml to read (default: discovered).")
StoreOpt = typer.Option(None, "--store", help="Store URL (sqlite:///… or postgresql://…).")
PolicyOpt = typer.Option(None, "--policy", help="Policy directory (default: ./policy).")
StateOpt = typer.Option(None, "--state-dir", help="State directory (store, evidence).")
InventoryOpt = typer.Option(None, "--inventory", "-i", help="Inventory (default: configured).")


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings(config_file: str | None, **flags: Any) -> config.Settings:
    try:
        return config.load(config_file, **{k: v for k, v in flags.items() if v is not None})
    except config.ConfigError as exc:
        _fail(str(exc))


def _policy(settings: config.Settings) -> Any:
    from opsrunner.policy import PolicyError, load_policy

    try:
        return load_policy(Path(settings.policy) if settings.policy else None)
    except PolicyError as exc:
        _fail(f"the policy does not load:\n{exc}")


@contextmanager
def _store(settings: config.Settings) -> Iterator[Store]:
    try:
        opened = Store.open(settings.store, config.state_dir(settings))
    except StoreError as exc:
        _fail(str(exc))
    try:
        yield opened
    except StoreError as exc:
        _fail(str(exc))
    finally:
        opened.close()


def _moment(label: str, text: str | None) -> dt.datetime | None:
    """An ISO date or time; naive means UTC; a bare date means its end for --valid-until."""
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        _fail(f"{label}: {text!r} is not an ISO 8601 date or time (2026-12-31, 2026-12-03T08:00Z)")
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _inventory_hosts(settings: config.Settings, inventory: str | None) -> dict[str, list[str]]:
    from opsrunner.runner import scope

    path = Path(inventory) if inventory else config.inventory(settings)
    try:
        return scope.inventory_groups(path)
    except scope.ScopeError as exc:
        _fail(f"--inventory: {exc}")


# -- attest ----------------------------------------------------------------------------------


class _AttestGroup(TyperGroup):
    """`opsrunner attest CONTROL …` records; `opsrunner attest list|show|…` are sub-commands."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["record", *args]
        return super().resolve_command(ctx, args)


attest_app = typer.Typer(
    cls=_AttestGroup,
    help="Attest manual controls with evidence: opsrunner attest CONTROL --evidence FILE --by "
    "NAME; list, show, revoke, expire-soon, verify.",
    no_args_is_help=True,
)


def _limits(policy: Any, settings: config.Settings, control: str) -> list[tuple[dt.datetime, str]]:
    """Open improvement items bound EMG-007 (incidents) and EMG-004 (drills): an overdue one
    fails the control, so an attestation may not outlive the first due date."""
    from opsrunner.emergency import drills, incidents

    if control not in ("EMG-004", "EMG-007"):
        return []
    out: list[tuple[dt.datetime, str]] = []
    with _store(settings) as opened:
        if control == "EMG-007":
            for view in incidents.listing(opened):
                for item in view.review.action_items if view.review else []:
                    if item.done_at is None:
                        due = dt.datetime.combine(item.due, dt.time(), tzinfo=dt.UTC)
                        due += dt.timedelta(days=1)
                        out.append((due, f"{view.ident} action {item.id} is due {item.due}"))
        else:
            for drill in drills.listing(opened):
                for entry in drill.overdue_items(dt.date.max):
                    due = dt.datetime.fromisoformat(entry["due"]).replace(tzinfo=dt.UTC)
                    due += dt.timedelta(days=1)
                    out.append(
                        (due, f"drill {drill.id} action {entry['id']} is due {entry['due']}")
                    )
    return out


@attest_app.command("record")
def attest_record(
    control: str = typer.Argument(..., help="The manual control, e.g. TRX-001."),
    evidence: list[Path] = typer.Option(  # noqa: B008 - typer declares options as defaults
        [], "--evidence", "-e", help="Evidence file (repeat for several)."
    ),
    by: str = typer.Option(..., "--by", help="Who attests: a user on the roster."),
    valid_until: str | None = typer.Option(
        None, "--valid-until", help="Until when (default: the control's frequency from now)."
    ),
    host: list[str] = typer.Option([], "--host", help="Limit the attestation to hosts."),  # noqa: B008 - typer declares options as defaults
    group: list[str] = typer.Option([], "--group", help="Limit the attestation to groups."),  # noqa: B008 - typer declares options as defaults
    note: str = typer.Option("", "--note", help="A note kept with the record."),
    config_file: str | None = ConfigOpt,
    policy_dir: str | None = PolicyOpt,
    state_dir: str | None = StateOpt,
    store: str | None = StoreOpt,
) -> None:
    """Record an attestation in policy/attestations.yml and keep the evidence by its sha256."""
    from opsrunner.emergency.attest import AttestError, attest
    from opsrunner.policy import PolicyError

    settings = _settings(config_file, policy=policy_dir, state_dir=state_dir, store=store)
    policy = _policy(settings)
    until = _moment("--valid-until", valid_until)
    if until is not None and valid_until is not None and len(valid_until.strip()) == 10:
        until += dt.timedelta(days=1)  # a bare date holds through that day
    try:
        record = attest(
            policy,
            control=control,
            evidence=evidence,
            by=by,
            state_dir=config.state_dir(settings),
            valid_until=until,
            hosts=host,
            groups=group,
            note=note,
            limits=_limits(policy, settings, control),
        )
    except (AttestError, PolicyError) as exc:
        _fail(str(exc))
    typer.echo(
        f"{record.id}: {record.control} attested by {record.attested_by} until "
        f"{record.valid_until.isoformat()} ({len(record.evidence_files)} evidence file(s))"
    )


@attest_app.command("list")
def attest_list(
    control: str | None = typer.Option(None, "--control", help="Only this control."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
    config_file: str | None = ConfigOpt,
    policy_dir: str | None = PolicyOpt,
) -> None:
    """Every attestation with its state now (valid, expired, revoked)."""
    from opsrunner.emergency.attest import state

    policy = _policy(_settings(config_file, policy=policy_dir))
    now = dt.datetime.now(dt.UTC)
    rows = [a for a in policy.attestations if control is None or a.control == control]
    if as_json:
        typer.echo(
            json.dumps(
                [{**a.model_dump(mode="json"), "state": state(a, now)} for a in rows], indent=2
            )
        )
        return
    for a in rows:
        typer.echo(
            f"{a.id or '-':<13} {a.control:<9} {state(a, now):<8} by {a.attested_by:<8} "
            f"{a.attested_at.date()} → {a.valid_until.date()}"
        )
    if not rows:
        typer.echo("no attestations")


@attest_app.command("show")
def attest_show(
    attestation: str = typer.Argument(..., help="Attestation id (ATT-2026-001)."),
    config_file: str | None = ConfigOpt,
    policy_dir: str | None = PolicyOpt,
) -> None:
    """One attestation with its evidence files."""
    from opsrunner.emergency.attest import AttestError, find, state

    policy = _policy(_settings(config_file, policy=policy_dir))
    try:
        _, record = find(policy, attestation)
    except AttestError as exc:
        _fail(str(exc))
    typer.echo(f"{record.id}  {record.control}  {state(record, dt.datetime.now(dt.UTC))}")
    typer.echo(f"  attested by {record.attested_by} at {record.attested_at.isoformat()}")
    typer.echo(f"  valid until {record.valid_until.isoformat()}")
    if record.revoked_at is not None:
        typer.echo(
            f"  revoked {record.revoked_at.isoformat()} by {record.revoked_by}: "
            f"{record.revoke_reason}"
        )
    if record.scope is not None:
        typer.echo(f"  scope hosts {record.scope.hosts} groups {record.scope.groups}")
    for item in record.evidence_files:
        typer.echo(f"  evidence {item.file} sha256 {item.sha256} ({item.size} bytes)")
    if record.note:
        typer.echo(f"  note: {record.note}")


@attest_app.command("revoke")
def attest_revoke(
    attestation: str = typer.Argument(..., help="Attestation id."),
    by: str = typer.Option(
        ..., "--by", help="Who revokes (the control's owner role or a manager)."
    ),
    reason: str = typer.Option(..., "--reason", help="Why the attestation no longer holds."),
    config_file: str | None = ConfigOpt,
    policy_dir: str | None = PolicyOpt,
) -> None:
    """Revoke an attestation from now on: its control fails until attested again."""
    from opsrunner.emergency.attest import AttestError, revoke
    from opsrunner.policy import PolicyError

    policy = _policy(_settings(config_file, policy=policy_dir))
    try:
        record = revoke(policy, attestation, by=by, reason=reason)
    except (AttestError, PolicyError) as exc:
        _fail(str(exc))
    assert record.revoked_at is not None
    typer.echo(f"{record.id}: revoked {record.revoked_at.isoformat()} by {by}")


@attest_app.command("expire-soon")
def attest_expire_soon(
    within: str = typer.Option("30d", "--within", help="Window: 30d, 2w, 12h."),
    config_file: str | None = ConfigOpt,
    policy_dir: str | None = PolicyOpt,
) -> None:
    """Valid attestations that expire within the window (exit 1 when there are any)."""
    from opsrunner.emergency.attest import expiring
    from opsrunner.runner.cli import parse_duration

    policy = _policy(_settings(config_file, policy=policy_dir))
    try:
        window = parse_duration(within)
    except typer.BadParameter as exc:
        _fail(f"--within: {exc}")
    found = expiring(policy, window)
    for a in found:
        typer.echo(f"{a.id or '-':<13} {a.control:<9} expires {a.valid_until.isoformat()}")
    if not found:
        typer.echo(f"no attestation expires within {within}")
        return
    raise typer.Exit(1)


@attest_app.command("verify")
def attest_verify(
    attestation: str = typer.Argument(..., help="Attestation id."),
    files: list[Path] = typer.Argument(None, help="Copies of the evidence to check as well."),  # noqa: B008 - typer declares options as defaults
    config_file: str | None = ConfigOpt,
    policy_dir: str | None = PolicyOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Check the kept evidence files (and any copies given) against the recorded sha256."""
    from opsrunner.emergency.attest import AttestError, verify

    settings = _settings(config_file, policy=policy_dir, state_dir=state_dir)
    policy = _policy(settings)
    try:
        checks = verify(policy, attestation, config.state_dir(settings), files or [])
    except AttestError as exc:
        _fail(str(exc))
    for check in checks:
        typer.echo(f"{'ok ' if check.ok else 'BAD'} {check.file}: {check.message}")
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


# -- incidents -------------------------------------------------------------------------------

incident_app = typer.Typer(
    help="Incidents (5.3): open, update the timeline, close with a review, list, show.",
    no_args_is_help=True,
)


def _show_incident(view: Any) -> None:
    data = view.as_dict()
    typer.echo(f"{data['ident']}  {data['stage']}  grade {data['severity']}  {data['kind']}")
    typer.echo(f"  {data['title']}")
    typer.echo(f"  system {data['system']}, hosts {', '.join(data['hosts'])}")
    typer.echo(f"  occurred {data['occurred_at']}, detected {data['detected_at']}")
    typer.echo(f"  symptoms: {data['symptoms']}")
    typer.echo(f"  impact: {data['impact']}")
    for entry in data["timeline"]:
        typer.echo(f"  {entry['at']} {entry['kind']:<9} {entry['by']}: {entry['text']}")
    typer.echo(
        "  minutes to detect {detect_minutes}, respond {respond_minutes}, "
        "resolve {resolve_minutes}".format(**data)
    )
    if data["review"]:
        review = data["review"]
        typer.echo(f"  review: {review['summary']}")
        for item in review["action_items"]:
            done = f"done {item['done_at']}" if item["done_at"] else "open"
            typer.echo(
                f"    {item['id']} {item['what']} — {item['owner']}, due {item['due']} ({done})"
            )


@incident_app.command("open")
def incident_open(
    title: str = typer.Option(..., "--title", help="One line naming the incident."),
    kind: str = typer.Option(..., "--kind", help="failure, data_loss, security or other."),
    severity: int = typer.Option(..., "--severity", help="Grade from the emergency plans (1 …)."),
    system: str = typer.Option(..., "--system", help="The affected system."),
    host: list[str] = typer.Option([], "--host", help="Affected host (repeat)."),  # noqa: B008 - typer declares options as defaults
    symptoms: str = typer.Option(..., "--symptoms", help="What was seen."),
    impact: str = typer.Option(..., "--impact", help="Scope of impact: who and what is affected."),
    occurred: str = typer.Option(..., "--occurred", help="When it began (ISO time, UTC if naive)."),
    detected: str = typer.Option(..., "--detected", help="When it was detected."),
    by: str = typer.Option(..., "--by", help="Who reports it (roster user)."),
    inventory: str | None = InventoryOpt,
    config_file: str | None = ConfigOpt,
    policy_dir: str | None = PolicyOpt,
    store: str | None = StoreOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Open an incident with the facts 5.3.1 asks for."""
    from opsrunner.emergency import incidents

    settings = _settings(config_file, policy=policy_dir, store=store, state_dir=state_dir)
    policy = _policy(settings)
    known = _inventory_hosts(settings, inventory)
    occurred_at = _moment("--occurred", occurred)
    detected_at = _moment("--detected", detected)
    assert occurred_at is not None and detected_at is not None
    with _store(settings) as opened:
        try:
            view = incidents.open_incident(
                opened,
                policy,
                title=title,
                kind=kind,
                severity=severity,
                system=system,
                hosts=host,
                known_hosts=known,
                symptoms=symptoms,
                impact=impact,
                occurred_at=occurred_at,
                detected_at=detected_at,
                reported_by=by,
            )
        except incidents.IncidentError as exc:
            _fail(str(exc))
    typer.echo(f"{view.ident} opened")


@incident_app.command("update")
def incident_update(
    incident: str = typer.Argument(..., help="Incident id (INC-2026-001)."),
    kind: str = typer.Option(
        "progress", "--kind", help="response, action, progress, resolved or note."
    ),
    text: str = typer.Option("", "--text", help="What was done or found."),
    by: str = typer.Option(..., "--by", help="Who (roster user)."),
    at: str | None = typer.Option(None, "--at", help="When (default: now)."),
    done: list[str] = typer.Option([], "--done", help="Mark a review action item done (A1)."),  # noqa: B008 - typer declares options as defaults
    config_file: str | None = ConfigOpt,
    policy_dir: str | None = PolicyOpt,
    store: str | None = StoreOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Add a timeline entry (5.3.2), or mark review action items done."""
    from opsrunner.emergency import incidents

    settings = _settings(config_file, policy=policy_dir, store=store, state_dir=state_dir)
    policy = _policy(settings)
    with _store(settings) as opened:
        try:
            view = incidents.update(
                opened,
                policy,
                incident,
                kind=kind,
                text=text,
                by=by,
                at=_moment("--at", at),
                done=done,
            )
        except incidents.IncidentError as exc:
            _fail(str(exc))
    typer.echo(f"{view.ident}: {view.stage}, {len(view.timeline)} timeline entries")


@incident_app.command("close")
def incident_close(
    incident: str = typer.Argument(..., help="Incident id."),
    review: Path = typer.Option(..., "--review", help="The post-incident review (YAML)."),  # noqa: B008 - typer declares options as defaults
    at: str | None = typer.Option(None, "--at", help="When (default: now)."),
    config_file: str | None = ConfigOpt,
    policy_dir: str | None = PolicyOpt,
    store: str | None = StoreOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Close a resolved incident with its post-incident review (5.3.3)."""
    from opsrunner.emergency import incidents

    settings = _settings(config_file, policy=policy_dir, store=store, state_dir=state_dir)
    policy = _policy(settings)
    try:
        loaded = incidents.read_review(review, policy)
    except incidents.IncidentError as exc:
        _fail(str(exc))
    with _store(settings) as opened:
        try:
            view = incidents.close(opened, incident, review=loaded, at=_moment("--at", at))
        except incidents.IncidentError as exc:
            _fail(str(exc))
    times = view.times()
    typer.echo(f"{view.ident} closed; minutes to resolve {times['resolve_minutes']}")


@incident_app.command("list")
def incident_list(
    stage: str | None = typer.Option(None, "--stage", help="open, resolved or closed."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
    config_file: str | None = ConfigOpt,
    store: str | None = StoreOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Incidents, oldest first, with open action items past due."""
    from opsrunner.emergency import incidents

    if stage is not None and stage not in incidents.STAGES:
        _fail(f"--stage: {stage!r} is not one of {', '.join(incidents.STAGES)}")
    settings = _settings(config_file, store=store, state_dir=state_dir)
    today = dt.datetime.now(dt.UTC).date()
    with _store(settings) as opened:
        views = incidents.listing(opened, stage=stage)  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps([v.as_dict() for v in views], indent=2))
        return
    for view in views:
        late = view.overdue_items(today)
        extra = f"  {len(late)} action item(s) past due" if late else ""
        typer.echo(f"{view.ident}  {view.stage:<8} grade {view.severity}  {view.title}{extra}")
    if not views:
        typer.echo("no incidents")


@incident_app.command("show")
def incident_show(
    incident: str = typer.Argument(..., help="Incident id."),
    config_file: str | None = ConfigOpt,
    store: str | None = StoreOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """One incident: facts, timeline, measured times and review."""
    from opsrunner.emergency import incidents

    settings = _settings(config_file, store=store, state_dir=state_dir)
    with _store(settings) as opened:
        try:
            view = incidents.show(opened, incident)
        except incidents.IncidentError as exc:
            _fail(str(exc))
    _show_incident(view)


# -- drills ----------------------------------------------------------------------------------

drill_app = typer.Typer(
    help="Drills (5.2) on real hosts: restore, service-failure, attack; list and show journals.",
    no_args_is_help=True,
)


@drill_app.command("run")
def drill_run(
    kind: str = typer.Argument(..., help="restore, service-failure or attack."),
    limit: str = typer.Option(..., "--limit", help="The host the drill targets."),
    source: str | None = typer.Option(None, "--source", help="attack: the attacking host."),
    inventory: str | None = InventoryOpt,
    config_file: str | None = ConfigOpt,
    policy_dir: str | None = PolicyOpt,
    store: str | None = StoreOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Run a drill on a lab or production host and record its journal and evaluation."""
    from opsrunner.emergency import drills

    settings = _settings(config_file, policy=policy_dir, store=store, state_dir=state_dir)
    policy = _policy(settings)
    with _store(settings) as opened:
        try:
            ctx = drills.context(opened, policy, settings, Path(inventory) if inventory else None)
            drill_id, journal = drills.run_drill(ctx, kind, host=limit, source=source)
        except drills.DrillError as exc:
            _fail(str(exc))
    data = journal.as_dict()
    typer.echo(f"drill {drill_id}: {kind} on {', '.join(journal.hosts)}: {data['status']}")
    for key, value in sorted(data["measurements"].items()):
        typer.echo(f"  {key}: {value}")
    for line in data["evaluation"]["revise"]:
        typer.echo(f"  revise: {line}")
    if data["status"] != "completed":
        raise typer.Exit(1)


@drill_app.command("list")
def drill_list(
    config_file: str | None = ConfigOpt,
    store: str | None = StoreOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Drills held, oldest first."""
    from opsrunner.emergency import drills

    settings = _settings(config_file, store=store, state_dir=state_dir)
    with _store(settings) as opened:
        found = drills.listing(opened)
    for d in found:
        measured = ", ".join(f"{k} {v}" for k, v in sorted(d.data.get("measurements", {}).items()))
        typer.echo(f"{d.id:>4}  {d.held_at.isoformat()}  {d.kind:<15} {d.outcome:<9} {measured}")
    if not found:
        typer.echo("no drills")


@drill_app.command("show")
def drill_show(
    drill: int = typer.Argument(..., help="Drill id."),
    config_file: str | None = ConfigOpt,
    store: str | None = StoreOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """One drill's journal (JSON)."""
    from opsrunner.emergency import drills

    settings = _settings(config_file, store=store, state_dir=state_dir)
    with _store(settings) as opened:
        try:
            found = drills.show(opened, drill)
        except drills.DrillError as exc:
            _fail(str(exc))
    typer.echo(json.dumps(found.data, indent=2, sort_keys=True))


# -- support, survey, assess -----------------------------------------------------------------

support_app = typer.Typer(
    help="Support tickets (6.3.2): import a help desk CSV.", no_args_is_help=True
)
survey_app = typer.Typer(
    help="User-satisfaction surveys (7.1.1): import answers.", no_args_is_help=True
)


@support_app.command("import")
def support_import(
    path: Path = typer.Argument(  # noqa: B008 - typer declares options as defaults
        ..., help="CSV: id,channel,opened,first_response,resolved,complexity."
    ),
    config_file: str | None = ConfigOpt,
    store: str | None = StoreOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Import support tickets; a bad row refuses the whole file."""
    from opsrunner.emergency import support

    settings = _settings(config_file, store=store, state_dir=state_dir)
    with _store(settings) as opened:
        try:
            counts = support.import_tickets(opened, path)
        except support.ImportError_ as exc:
            _fail(str(exc))
    typer.echo(f"{counts['imported']} tickets imported, {counts['skipped']} already there")


@survey_app.command("import")
def survey_import(
    path: Path = typer.Argument(..., help="CSV: survey,respondent,answered,score,comment."),  # noqa: B008 - typer declares options as defaults
    config_file: str | None = ConfigOpt,
    store: str | None = StoreOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Import survey answers (score 1 to 5); a bad row refuses the whole file."""
    from opsrunner.emergency import support

    settings = _settings(config_file, store=store, state_dir=state_dir)
    with _store(settings) as opened:
        try:
            counts = support.import_survey(opened, path)
        except support.ImportError_ as exc:
            _fail(str(exc))
    typer.echo(f"{counts['imported']} answers imported, {counts['skipped']} already there")


def assess_command(
    quarter: str | None = typer.Option(None, "--quarter", help="A quarter: 2026Q4."),
    year: int | None = typer.Option(None, "--year", help="A year: 2026."),
    fmt: str = typer.Option("md", "--format", help="md, json or html."),
    output: Path | None = typer.Option(  # noqa: B008 - typer declares options as defaults
        None, "--output", "-o", help="Write here (default: stdout)."
    ),
    inventory: str | None = InventoryOpt,
    config_file: str | None = ConfigOpt,
    policy_dir: str | None = PolicyOpt,
    store: str | None = StoreOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """The period assessment (chapter 7): indicators against targets, drills, incidents, grade."""
    from opsrunner.emergency import assess

    if fmt not in ("md", "json", "html"):
        _fail(f"--format: {fmt!r} is not md, json or html")
    settings = _settings(config_file, policy=policy_dir, store=store, state_dir=state_dir)
    policy = _policy(settings)
    fleet = _inventory_hosts(settings, inventory)
    try:
        label, start, end = assess.period(quarter, year)
        with _store(settings) as opened:
            report = assess.assess(
                opened,
                policy,
                fleet,
                label=label,
                start=start,
                end=end,
                scrape_interval=dt.timedelta(seconds=settings.scrape_interval),
            )
    except assess.AssessError as exc:
        _fail(str(exc))
    render = {"json": assess.to_json, "md": assess.to_markdown, "html": assess.to_html}[fmt]
    text = render(report)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")


def register(app: typer.Typer) -> None:
    """Add the chapter 5 to 7 commands to the main CLI."""
    app.add_typer(attest_app, name="attest")
    app.add_typer(incident_app, name="incident")
    app.add_typer(drill_app, name="drill")
    app.add_typer(support_app, name="support")
    app.add_typer(survey_app, name="survey")
    app.command("assess")(assess_command)
