"""`opsrunner notice|alert|change`: advance notices, alerts and change records."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from opsrunner import config

notice_app = typer.Typer(
    help="Advance notices of maintenance windows (3.1.3).", no_args_is_help=True
)
alert_app = typer.Typer(
    help="Alerts raised from runs, results and the policy.", no_args_is_help=True
)
change_app = typer.Typer(
    help="Change records: plan, test, start, evaluate (3.4).", no_args_is_help=True
)

StoreOpt = typer.Option(None, "--store", help="Store URL (default: the configured store).")
ConfigOpt = typer.Option(None, "--config", help="opsrunner.yml to use.")
PolicyOpt = typer.Option(None, "--policy", help="Policy directory.")
JsonOpt = typer.Option(False, "--json", help="Print JSON.")
FilesOpt = typer.Option(None, "--file", help="Evidence file (kept by sha256); repeat for more.")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _settings(config_file: str | None, **flags: Any) -> config.Settings:
    try:
        return config.load(config_file, **{k: v for k, v in flags.items() if v is not None})
    except config.ConfigError as exc:
        raise _fail(str(exc)) from exc


@contextmanager
def _opened(settings: config.Settings) -> Iterator[Any]:
    from opsrunner.store import Store, StoreError

    try:
        store = Store.open(settings.store, config.state_dir(settings))
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    try:
        yield store
    finally:
        store.close()


def _policy(settings: config.Settings) -> Any:
    from opsrunner.policy import PolicyError, load_policy

    try:
        return load_policy(Path(settings.policy) if settings.policy else None)
    except PolicyError as exc:
        raise _fail(f"the policy does not load:\n{exc}") from exc


def _when(value: str | None, what: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _fail(f"{what} {value!r}: not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise _fail(f"{what} {value!r}: give the offset (e.g. +08:00 or Z)")
    return parsed.astimezone(dt.UTC)


def _iso(value: dt.datetime | None) -> str:
    from opsrunner.notify.channels import utc_iso

    return utc_iso(value) if value else "-"


# -- notice --------------------------------------------------------------------------------------
@notice_app.command("list")
def notice_list(
    window: str | None = typer.Option(None, "--window", help="Only this window's notices."),
    as_json: bool = JsonOpt,
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
) -> None:
    """Notices on record: window opening, status, when every recipient had it."""
    from opsrunner.notify import notices

    with _opened(_settings(config_file, store=store)) as opened:
        found = notices.list_notices(opened, window)
    if as_json:
        typer.echo(json.dumps([n.as_json() for n in found], indent=2))
        return
    if not found:
        typer.echo("no notices on record")
    for n in found:
        ok = sum(1 for d in n.deliveries if d["status"] == "sent")
        timing = "in time" if n.in_time else ("late" if n.sent_at else "not complete")
        typer.echo(
            f"{n.ident}  {n.window}  opens {_iso(n.window_start)}  {n.status} ({timing}), "
            f"{ok}/{len(n.deliveries)} delivered, sent {_iso(n.sent_at)}"
        )


@notice_app.command("show")
def notice_show(
    ident: str = typer.Argument(..., help="Notice ident (NTC-…)."),
    as_json: bool = JsonOpt,
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
) -> None:
    """One notice: content, hash, hosts, audience and each recipient's delivery."""
    from opsrunner.notify import notices

    with _opened(_settings(config_file, store=store)) as opened:
        try:
            n = notices.get_notice(opened, ident)
        except notices.NoticeError as exc:
            raise _fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(n.as_json(), indent=2))
        return
    typer.echo(f"{n.ident}: {n.status}, sent {_iso(n.sent_at)} (due {n.data.get('due')})")
    typer.echo(f"content sha256 {n.content_sha256}; audience {', '.join(n.audience)}")
    typer.echo(f"Subject: {n.subject}\n\n{n.body}")
    for d in n.deliveries:
        error = f"  last error: {d['error']}" if d["error"] else ""
        typer.echo(
            f"  {d['channel']:<16} {d['recipient']:<32} {d['status']:<8} "
            f"attempts {d['attempts']} sent {d['sent_at'] or '-'}{error}"
        )


@notice_app.command("send")
def notice_send(
    window: str = typer.Argument(..., help="Window name from policy/windows.yml."),
    start: str | None = typer.Option(
        None, "--start", help="The opening to announce (ISO time with offset; default: next)."
    ),
    change: str = typer.Option("", "--change", help="Change record the window carries out."),
    inventory: str | None = typer.Option(None, "--inventory", "-i", help="Inventory."),
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
    policy: str | None = PolicyOpt,
) -> None:
    """Send (or finish sending) the notice of a window's next opening and record it."""
    from opsrunner.notify import notices
    from opsrunner.runner.scope import ScopeError, inventory_groups

    settings = _settings(config_file, store=store, inventory=inventory, policy=policy)
    loaded = _policy(settings)
    when = _when(start, "--start")
    try:
        notices.window_by_name(loaded, window)
        groups = inventory_groups(config.inventory(settings))
    except (notices.NoticeError, ScopeError) as exc:
        raise _fail(str(exc)) from exc
    with _opened(settings) as opened:
        try:
            n = notices.send_notice(
                loaded, opened, window, groups, _now(), start=when, change_ref=change
            )
        except notices.NoticeError as exc:
            raise _fail(str(exc)) from exc
        path = notices.write_vars_file(opened)
    for d in n.deliveries:
        typer.echo(f"  {d['channel']}: {d['recipient']}: {d['status']} {d['error']}".rstrip())
    typer.echo(f"{n.ident}: {n.status}; patching reads it from {path}")
    if n.status != "sent":
        raise typer.Exit(1)


@notice_app.command("vars")
def notice_vars(
    output: str | None = typer.Option(None, "-o", "--output", help="File (default: state dir)."),
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
) -> None:
    """Write the extra-vars file for `ansible-playbook -e @FILE` (notices on record)."""
    from opsrunner.notify import notices

    with _opened(_settings(config_file, store=store)) as opened:
        path = notices.write_vars_file(opened, Path(output) if output else None)
    typer.echo(str(path))


# -- alert ---------------------------------------------------------------------------------------
@alert_app.command("list")
def alert_list(
    status: str | None = typer.Option(None, "--status", help="firing or resolved."),
    as_json: bool = JsonOpt,
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
) -> None:
    """Alerts on record, and any delivery that gave up."""
    from opsrunner.notify import alerts, outbox

    if status not in (None, "firing", "resolved"):
        raise _fail(f"--status {status!r}: choose firing or resolved")
    with _opened(_settings(config_file, store=store)) as opened:
        rows = alerts.list_alerts(opened, status)
        failed = outbox.messages(opened, status="failed")
    if as_json:
        typer.echo(json.dumps([_alert_json(r) for r in rows], indent=2))
        return
    if not rows:
        typer.echo("no alerts on record")
    for r in rows:
        flags = " ".join(
            f
            for f in (
                f"muted by {r.muted_by}" if r.muted_by else "",
                f"acked by {r.acked_by}" if r.acked_by else "",
            )
            if f
        )
        typer.echo(
            f"{r.fingerprint}  {r.status:<8} {r.severity:<8} {r.summary}  "
            f"since {_iso(r.started_at)} sent {r.sent_count}x {flags}".rstrip()
        )
    for m in failed:
        typer.echo(f"UNDELIVERED {m.kind} {m.ref} to {m.channel}:{m.recipient}: {m.last_error}")


def _alert_json(r: Any) -> dict[str, Any]:
    return {
        "fingerprint": r.fingerprint,
        "rule": r.rule,
        "severity": r.severity,
        "host": r.host,
        "summary": r.summary,
        "labels": r.labels,
        "status": r.status,
        "started_at": _iso(r.started_at),
        "last_sent_at": _iso(r.last_sent_at),
        "sent_count": r.sent_count,
        "resolved_at": _iso(r.resolved_at),
        "muted_by": r.muted_by,
        "acked_by": r.acked_by,
        "acked_at": _iso(r.acked_at),
    }


@alert_app.command("show")
def alert_show(
    fingerprint: str = typer.Argument(..., help="Fingerprint (or a unique prefix)."),
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
) -> None:
    """One alert and every message sent about it."""
    from opsrunner.notify import alerts, outbox

    with _opened(_settings(config_file, store=store)) as opened:
        try:
            row = alerts.find_alert(opened, fingerprint)
        except alerts.AlertError as exc:
            raise _fail(str(exc)) from exc
        sent = outbox.messages(opened, ref=row.fingerprint)
    typer.echo(json.dumps(_alert_json(row), indent=2))
    for m in sent:
        typer.echo(
            f"  {m.kind:<8} {m.channel}:{m.recipient} {m.status} attempts {m.attempts} "
            f"sent {_iso(m.sent_at)} {m.last_error}".rstrip()
        )


@alert_app.command("ack")
def alert_ack(
    fingerprint: str = typer.Argument(..., help="Fingerprint (or a unique prefix)."),
    by: str = typer.Option(..., "--by", help="Who acknowledges (roster user)."),
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
    policy: str | None = PolicyOpt,
) -> None:
    """Acknowledge a firing alert: it stops repeating until it resolves or fires again."""
    from opsrunner.notify import alerts

    settings = _settings(config_file, store=store, policy=policy)
    try:
        _policy(settings).person(by)
    except KeyError as exc:
        raise _fail(f"--by {by!r} is not on the roster") from exc
    with _opened(settings) as opened:
        try:
            row = alerts.ack(opened, fingerprint, by, _now())
        except alerts.AlertError as exc:
            raise _fail(str(exc)) from exc
    typer.echo(f"{row.fingerprint} acknowledged by {by}")


@alert_app.command("evaluate")
def alert_evaluate(
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
    policy: str | None = PolicyOpt,
) -> None:
    """Evaluate the alert conditions now and deliver what is due (the daemon does this)."""
    from opsrunner.notify import alerts

    settings = _settings(config_file, store=store, policy=policy)
    loaded = _policy(settings)
    with _opened(settings) as opened:
        done = alerts.evaluate(loaded, opened, _now())
    typer.echo(
        f"raised {len(done.raised)}, repeated {len(done.repeated)}, resolved "
        f"{len(done.resolved)}, muted {len(done.muted)}; delivered "
        f"{sum(d.ok for d in done.delivered)}/{len(done.delivered)}"
    )


# -- change --------------------------------------------------------------------------------------
def _change_call(settings: config.Settings, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from opsrunner.notify.changes import ChangeError

    with _opened(settings) as opened:
        try:
            return fn(opened, *args, **kwargs)
        except ChangeError as exc:
            raise _fail(str(exc)) from exc


@change_app.command("plan")
def change_plan(
    title: str = typer.Option(..., "--title", help="One line."),
    what: str = typer.Option(..., "--what", help="What changes."),
    why: str = typer.Option(..., "--why", help="Why."),
    hosts: str = typer.Option(..., "--hosts", help="Hosts, comma-separated."),
    rollback: str = typer.Option(..., "--rollback", help="How to roll back."),
    window: str = typer.Option("", "--window", help="Maintenance window it runs in."),
    by: str = typer.Option("", "--by", help="Who plans it."),
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
    policy: str | None = PolicyOpt,
) -> None:
    """Record a planned change: what, why, hosts, window, rollback."""
    from opsrunner.notify import changes

    settings = _settings(config_file, store=store, policy=policy)
    windows = [w.name for w in _policy(settings).windows]
    row = _change_call(
        settings,
        changes.plan,
        _now(),
        title=title,
        what=what,
        why=why,
        hosts=hosts.split(","),
        rollback=rollback,
        window=window,
        by=by,
        windows=windows,
    )
    typer.echo(f"{row.ident} planned")


@change_app.command("test")
def change_test(
    ident: str = typer.Argument(..., help="CHG-YYYY-NNN."),
    kind: str = typer.Option(..., "--kind", help="functional, performance or compatibility."),
    result: str = typer.Option(..., "--result", help="pass or fail."),
    ref: str = typer.Option("", "--ref", help="Molecule or CI run reference."),
    files: list[Path] | None = FilesOpt,
    note: str = typer.Option("", "--note"),
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
) -> None:
    """Record test evidence before the change goes live."""
    from opsrunner.notify import changes

    row = _change_call(
        _settings(config_file, store=store),
        changes.record_test,
        ident,
        _now(),
        kind=kind,
        result=result,
        ref=ref,
        files=files or [],
        note=note,
    )
    typer.echo(f"{row.ident}: {kind} {result}; now {row.status}")


@change_app.command("start")
def change_start(
    ident: str = typer.Argument(..., help="CHG-YYYY-NNN."),
    by: str = typer.Option("", "--by"),
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
) -> None:
    """The change goes live (needs passing functional, performance and compatibility tests)."""
    from opsrunner.notify import changes

    row = _change_call(_settings(config_file, store=store), changes.start, ident, _now(), by=by)
    typer.echo(f"{row.ident} started {_iso(row.started_at)}")


@change_app.command("evaluate")
def change_evaluate(
    ident: str = typer.Argument(..., help="CHG-YYYY-NNN."),
    outcome: str = typer.Option(..., "--outcome", help="successful, partial, failed, rolled-back."),
    effect: str = typer.Option(..., "--effect"),
    lessons: str = typer.Option(..., "--lessons"),
    problems: str = typer.Option("", "--problems"),
    by: str = typer.Option("", "--by"),
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
) -> None:
    """Close the change with its evaluation (effect, problems, lessons)."""
    from opsrunner.notify import changes

    row = _change_call(
        _settings(config_file, store=store),
        changes.evaluate,
        ident,
        _now(),
        outcome=outcome,
        effect=effect,
        problems=problems,
        lessons=lessons,
        by=by,
    )
    seen = row.data.get("happened", {})
    typer.echo(
        f"{row.ident} evaluated: {outcome}; {len(seen.get('runs', []))} patching run(s), "
        f"{len(seen.get('alerts', []))} alert(s)"
    )


@change_app.command("show")
def change_show(
    ident: str = typer.Argument(..., help="CHG-YYYY-NNN."),
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
) -> None:
    """The whole change record as JSON."""
    from opsrunner.notify import changes

    data = _change_call(_settings(config_file, store=store), changes.show, ident, _now())
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@change_app.command("list")
def change_list(
    as_json: bool = JsonOpt,
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
) -> None:
    """Every change, and the patching enforces that ran outside any change."""
    from opsrunner.notify import changes

    settings = _settings(config_file, store=store)
    with _opened(settings) as opened:
        rows = changes.list_changes(opened)
        outside = changes.outside_changes(opened, _now())
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "changes": [
                        {"ident": c.ident, "title": c.title, "status": c.status, "hosts": c.hosts}
                        for c in rows
                    ],
                    "patching_outside_changes": [r.ident for r in outside],
                },
                indent=2,
            )
        )
        return
    for c in rows:
        outcome = (c.data.get("evaluation") or {}).get("outcome", "")
        typer.echo(f"{c.ident}  {c.status:<9} {outcome:<11} {c.title}  [{', '.join(c.hosts)}]")
    if not rows:
        typer.echo("no changes on record")
    for r in outside:
        typer.echo(f"OUTSIDE A CHANGE: patching enforce {r.ident} {_iso(r.started_at)} {r.status}")


def register(app: typer.Typer) -> None:
    """Add the notice, alert and change command groups to the main app."""
    app.add_typer(notice_app, name="notice")
    app.add_typer(alert_app, name="alert")
    app.add_typer(change_app, name="change")
