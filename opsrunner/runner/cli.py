"""Run commands (`opsrunner audit|enforce|operate|runs|score|schedule|daemon|store`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import typer

from opsrunner import config, paths
from opsrunner.store import Store, StoreError

EXIT_SKIPPED = 75  # EX_TEMPFAIL: another run held the lock; try later

runs_app = typer.Typer(
    help="Browse recorded runs and recover them from artifacts.", no_args_is_help=True
)
schedule_app = typer.Typer(
    help="The schedule derived from the policy, and its export.", no_args_is_help=True
)
store_app = typer.Typer(help="Store upkeep: info, prune, export, import.", no_args_is_help=True)

# -- shared options ------------------------------------------------------------------------------
ConfigOpt = typer.Option(
    None, "--config", help="Config file (else $OPSRUNNER_CONFIG, ./opsrunner.yml, ~/.config)."
)
StoreOpt = typer.Option(
    None, "--store", help="Store: sqlite path/URL or postgresql://… (default: SQLite in state dir)."
)
InventoryOpt = typer.Option(None, "--inventory", "-i", help="Inventory (default: inventories/lab).")
PolicyOpt = typer.Option(None, "--policy", help="Policy directory (default: policy/).")
StateOpt = typer.Option(None, "--state-dir", help="State directory (store, evidence, artifacts).")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _settings(config_file: str | None, **flags: Any) -> config.Settings:
    try:
        return config.load(config_file, **flags)
    except config.ConfigError as exc:
        raise _fail(str(exc)) from exc


@contextmanager
def _store(settings: config.Settings) -> Iterator[Store]:
    try:
        opened = Store.open(settings.store, config.state_dir(settings))
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    try:
        yield opened
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    finally:
        opened.close()


def _load_policy(settings: config.Settings, revision: str | None = None) -> Any:
    from opsrunner.policy import PolicyError, load_policy

    where = Path(settings.policy) if settings.policy else None
    try:
        if revision:
            return _policy_at(revision, where)
        return load_policy(where)
    except PolicyError as exc:
        raise _fail(f"the policy does not load:\n{exc}") from exc


def _policy_at(revision: str, where: Path | None) -> Any:
    """The policy as it was at a git revision (re-score a past run under another revision)."""
    from opsrunner.policy import default_policy_dir
    from opsrunner.reports.diff import DiffError, policy_at

    try:
        return policy_at(where or default_policy_dir(), revision)
    except DiffError as exc:
        raise _fail(f"{exc}, cannot read revision {revision}") from exc


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: str) -> dt.timedelta:
    """90d, 12h, 2w, 30m, 45s."""
    match = _DURATION.match(text)
    if not match:
        raise typer.BadParameter(f"{text!r}: give a number and s, m, h, d or w (e.g. 90d)")
    amount, unit = int(match.group(1)), match.group(2)
    return dt.timedelta(
        **{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[unit]: amount}
    )


# -- audit / enforce / operate -------------------------------------------------------------------
def _run(
    mode: str,
    *,
    job: str | None,
    limit: str | None,
    controls: list[str] | None,
    inventory: str | None,
    store: str | None,
    config_file: str | None,
    policy: str | None,
    state_dir: str | None,
    forks: int | None,
    task_timeout: int | None,
    batch_size: int | None,
    run_timeout: int | None,
    tags: str | None,
    plain: bool,
    summary: bool,
    schedule_job: str | None,
    emergency: str | None = None,
    allow_disruptive: list[str] | None = None,
    nodes: str | None = None,
    retry_failed: str | None = None,
) -> None:
    from opsrunner.reports import compliance_summary
    from opsrunner.runner.nodes import run
    from opsrunner.runner.progress import PlainReporter, for_terminal
    from opsrunner.runner.run import RunError

    settings = _settings(
        config_file,
        store=store,
        inventory=inventory,
        policy=policy,
        state_dir=state_dir,
        forks=forks,
        task_timeout=task_timeout,
        run_timeout=run_timeout,
        batch_size=batch_size,
    )
    reporter = PlainReporter() if plain else for_terminal()
    with _store(settings) as opened:
        try:
            record = run(
                mode,
                config.inventory(settings),
                limit=limit,
                controls=_split(controls),
                store=opened,
                job=job or schedule_job or ("emergency" if emergency else None),
                settings=settings,
                reporter=reporter,
                tags=tags,
                extravars=_enforce_vars(mode, opened, emergency),
                allow_disruptive=_split(allow_disruptive),
                nodes=nodes,
                retry_failed=retry_failed,
                log=lambda line: typer.echo(line, err=True),
            )
        except RunError as exc:
            raise _fail(str(exc)) from exc
        if summary and record.status != "skipped":
            typer.echo(
                compliance_summary(
                    opened, record.ident, _load_policy(settings), model=settings.scoring_model
                )
            )
    if record.status == "skipped":
        raise typer.Exit(EXIT_SKIPPED)
    if record.status != "successful":
        raise typer.Exit(1)


LimitOpt = typer.Option(None, "--limit", "-l", help="Ansible host pattern to limit the run to.")
ControlsOpt = typer.Option(
    None, "--controls", "-c", help="Control ids (comma-separated or repeated)."
)
ForksOpt = typer.Option(None, "--forks", help="Parallel hosts.")
TaskTimeoutOpt = typer.Option(None, "--task-timeout", help="Seconds one task may take (0: none).")
RunTimeoutOpt = typer.Option(
    None, "--run-timeout", help="Seconds the whole run may take (0: none)."
)
BatchOpt = typer.Option(None, "--batch-size", help="Results per store transaction.")
TagsOpt = typer.Option(None, "--tags", help="Ansible tags to run (e.g. fw-001).")
PlainOpt = typer.Option(False, "--plain", help="Plain progress lines even on a terminal.")
SummaryOpt = typer.Option(
    True, "--summary/--no-summary", help="Print the compliance summary at the end."
)
EmergencyOpt = typer.Option(
    None,
    "--emergency",
    help="Enforce: patch outside the maintenance window / without notice, for this reason "
    "(recorded on the run as job 'emergency' and by the patching role).",
)


def _enforce_vars(mode: str, store: Store, emergency: str | None) -> dict[str, Any] | None:
    """Audit and enforce read the store's notices on record (PAT-006; patching defers without
    one) and any emergency override."""
    if mode not in ("audit", "enforce"):
        return _emergency_vars(emergency)
    from opsrunner.notify.notices import ansible_vars

    return {**ansible_vars(store), **(_emergency_vars(emergency) or {})}


def _emergency_vars(reason: str | None) -> dict[str, Any] | None:
    """The patching role's emergency override (it refuses one without a reason)."""
    if reason is None:
        return None
    if not reason.strip():
        raise _fail("--emergency needs a reason")
    return {"patching_emergency": True, "patching_emergency_reason": reason.strip()}


ScheduleJobOpt = typer.Option(None, "--schedule-job", help="Record the run as this schedule job's.")
AllowDisruptiveOpt = typer.Option(
    None,
    "--allow-disruptive",
    help="Enforce: let these roles take their disruptive steps on every host of this run "
    "(comma-separated or repeated, e.g. account_cleanup,patching); recorded on the run. "
    "policy.yml `disruptive` authorises some roles per tier without it.",
)

NodesOpt = typer.Option(
    None, "--nodes", help="Slice the hosts across these execution nodes (docs/scale-out.md)."
)
RetryFailedOpt = typer.Option(
    None, "--retry-failed", help="Rerun only the hosts RUN left unknown (its interrupted slices)."
)


def _audit_like(mode: str) -> Any:
    def command(
        limit: str | None = LimitOpt,
        controls: list[str] | None = ControlsOpt,
        inventory: str | None = InventoryOpt,
        store: str | None = StoreOpt,
        config_file: str | None = ConfigOpt,
        policy: str | None = PolicyOpt,
        state_dir: str | None = StateOpt,
        forks: int | None = ForksOpt,
        task_timeout: int | None = TaskTimeoutOpt,
        batch_size: int | None = BatchOpt,
        run_timeout: int | None = RunTimeoutOpt,
        tags: str | None = TagsOpt,
        plain: bool = PlainOpt,
        summary: bool = SummaryOpt,
        schedule_job: str | None = ScheduleJobOpt,
        emergency: str | None = EmergencyOpt,
        allow_disruptive: list[str] | None = AllowDisruptiveOpt,
        nodes: str | None = NodesOpt,
        retry_failed: str | None = RetryFailedOpt,
    ) -> None:
        if emergency is not None and mode != "enforce":
            raise _fail("--emergency goes with enforce only")
        if allow_disruptive and mode != "enforce":
            raise _fail("--allow-disruptive goes with enforce only (an audit never changes a host)")
        _run(
            mode,
            job=None,
            limit=limit,
            controls=controls,
            inventory=inventory,
            store=store,
            config_file=config_file,
            policy=policy,
            state_dir=state_dir,
            forks=forks,
            task_timeout=task_timeout,
            batch_size=batch_size,
            run_timeout=run_timeout,
            tags=tags,
            plain=plain,
            summary=summary,
            schedule_job=schedule_job,
            emergency=emergency,
            allow_disruptive=allow_disruptive,
            nodes=nodes,
            retry_failed=retry_failed,
        )

    command.__doc__ = {
        "audit": "Audit: run the policy's playbooks in check mode (never changes a host).",
        "enforce": "Enforce: remediate hosts until compliant (disruptive steps as roles allow).",
    }[mode]
    return command


def operate(
    job: str = typer.Argument(
        ..., help="The job: playbooks/operate_<JOB>.yml (backup, restore_test, …)."
    ),
    limit: str | None = LimitOpt,
    inventory: str | None = InventoryOpt,
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
    policy: str | None = PolicyOpt,
    state_dir: str | None = StateOpt,
    forks: int | None = ForksOpt,
    task_timeout: int | None = TaskTimeoutOpt,
    batch_size: int | None = BatchOpt,
    run_timeout: int | None = RunTimeoutOpt,
    plain: bool = PlainOpt,
    summary: bool = typer.Option(
        False, "--summary/--no-summary", help="Print the summary at the end."
    ),
    schedule_job: str | None = ScheduleJobOpt,
) -> None:
    """Operate: run an operational job (backup, restore test, log-review action) and record it."""
    del schedule_job  # the operate job's own name is what its runs are recorded under
    _run(
        "operate",
        job=job,
        limit=limit,
        controls=None,
        inventory=inventory,
        store=store,
        config_file=config_file,
        policy=policy,
        state_dir=state_dir,
        forks=forks,
        task_timeout=task_timeout,
        batch_size=batch_size,
        run_timeout=run_timeout,
        tags=None,
        plain=plain,
        summary=summary,
        schedule_job=None,
    )


# -- runs ----------------------------------------------------------------------------------------
@runs_app.command("list")
def runs_list(
    count: int = typer.Option(20, "--count", "-n", help="How many runs, newest first."),
    mode: str | None = typer.Option(None, "--mode", help="Only audit, enforce or operate runs."),
    status: str | None = typer.Option(None, "--status", help="Only runs with this status."),
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
    state_dir: str | None = StateOpt,
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
) -> None:
    """List recorded runs, newest first."""
    settings = _settings(config_file, store=store, state_dir=state_dir)
    with _store(settings) as opened:
        for run in opened.list_runs(limit=count, mode=mode, status=status):
            if as_json:
                typer.echo(
                    json.dumps(
                        {
                            "id": run.id,
                            "ident": run.ident,
                            "mode": run.mode,
                            "status": run.status,
                            "started_at": run.started_at.isoformat(),
                            "job": run.job,
                            "late": run.late,
                        }
                    )
                )
                continue
            ended = run.ended_at.isoformat(timespec="seconds") if run.ended_at else "-"
            late = " late" if run.late else ""
            typer.echo(
                f"{run.id:>5} {run.ident:<40} {run.mode:<8} {run.status:<12} "
                f"{run.started_at.isoformat(timespec='seconds')} → {ended} {run.job}{late}"
            )


@runs_app.command("show")
def runs_show(
    run_key: str = typer.Argument(..., help="Run id or ident (a unique prefix will do)."),
    failed_only: bool = typer.Option(False, "--failed", help="Only results that do not pass."),
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
    state_dir: str | None = StateOpt,
    as_json: bool = typer.Option(False, "--json", help="The run and its results as JSON."),
    show_timing: bool = typer.Option(
        False, "--timing", help="Where the run's time went: per role, control, task and host."
    ),
    output: str = typer.Option("text", "--format", help="With --timing: text or json."),
) -> None:
    """Show one run: its record, hosts and every host x control result with evidence."""
    settings = _settings(config_file, store=store, state_dir=state_dir)
    with _store(settings) as opened:
        run = opened.get_run(run_key)
        assert run.id is not None
        if show_timing:
            from opsrunner.runner import timing

            typer.echo(timing.show(opened, run, output))
            return
        results = opened.results(run.id)
        hosts = opened.hosts(run.id)
    if failed_only:
        results = [r for r in results if r.status not in ("pass", "notapplicable")]
    if as_json:
        payload = {
            "run": {
                k: (v.isoformat() if isinstance(v, dt.datetime) else v)
                for k, v in run.__dict__.items()
            },
            "hosts": [h.__dict__ for h in hosts],
            "results": [
                {
                    k: (v.isoformat() if isinstance(v, dt.datetime) else v)
                    for k, v in ((f.name, getattr(r, f.name)) for f in dataclasses.fields(r))
                }
                for r in results
            ],
        }
        typer.echo(json.dumps(payload, indent=2, default=list))
        return
    for key in (
        "ident",
        "mode",
        "job",
        "status",
        "rc",
        "started_at",
        "ended_at",
        "user",
        "controller",
        "inventory",
        "limit",
        "controls",
        "policy_commit",
        "policy_digest",
        "scheduled_for",
        "late",
        "reason",
        "artifact_dir",
    ):
        typer.echo(f"{key:>14}: {getattr(run, key)}")
    allowed = ", ".join(run.disruptive) if run.disruptive else "none named for this run"
    typer.echo(f"{'disruptive':>14}: {allowed}")
    for host in hosts:
        state = "reachable" if host.reachable else f"UNREACHABLE ({host.reason})"
        typer.echo(f"host {host.host} [{', '.join(host.groups)}] {state} {host.stats}")
    for r in results:
        flag = " remediated" if r.remediated else ""
        typer.echo(f"  {r.host:<16} {r.control_id:<9} {r.status:<13}{flag} {r.reason}")
        if r.evidence:
            typer.echo(f"  {'':<16} evidence: {r.evidence[:200]} (sha256 {r.evidence_sha256[:12]})")


@runs_app.command("import")
def runs_import(
    run_dir: Path = typer.Argument(..., help="A run's private data dir (<state>/runs/<ident>)."),  # noqa: B008
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Re-import a run from ansible-runner's artifacts (after a crash); safe to repeat."""
    from opsrunner.runner.run import RunError, import_artifacts

    settings = _settings(config_file, store=store, state_dir=state_dir)
    with _store(settings) as opened:
        try:
            record = import_artifacts(opened, run_dir, config.state_dir(settings))
        except RunError as exc:
            raise _fail(str(exc)) from exc
    typer.echo(f"run {record.ident}: {record.status}")


# -- score ---------------------------------------------------------------------------------------
def parse_moment(text: str, now: dt.datetime) -> dt.datetime:
    """An ISO 8601 date or time (naive means UTC) or an offset from now: +3d, -12h."""
    raw = text.strip()
    if raw[:1] in "+-" and raw[1:2].isdigit():
        delta = parse_duration(raw[1:])
        return now + delta if raw[0] == "+" else now - delta
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r}: give an ISO 8601 date or time (2026-12-04, 2026-12-04T18:00+08:00; "
            "naive means UTC) or an offset such as +3d"
        ) from exc
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _fleet(settings: config.Settings, inventory: str | None) -> dict[str, list[str]]:
    """The scored fleet: the inventory's hosts with their groups."""
    from opsrunner.runner import scope as scoping

    path = Path(inventory) if inventory else config.inventory(settings)
    try:
        return scoping.inventory_groups(path)
    except scoping.ScopeError as exc:
        raise _fail(f"{exc} (the scored fleet is the inventory's hosts: give --inventory)") from exc


def score(
    run_key: str | None = typer.Option(
        None, "--run", help="Score one run (default: latest evidence per host x control)."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="xccdf (XCCDF 1.2 default), flat, flat_unweighted or absolute (docs/scoring.md).",
    ),
    view: str = typer.Option(
        "effective", "--view", help="raw (waivers ignored) or effective, for gates."
    ),
    kind: str = typer.Option("all", "--kind", help="automated, manual or all, for gates."),
    fail_under: float | None = typer.Option(
        None, "--fail-under", help="Exit 1 when the score is under N%."
    ),
    max_failed: list[str] | None = typer.Option(  # noqa: B008 - typer declares options as defaults
        None, "--max-failed", help="SEVERITY=N: at most N not passing (repeat)."
    ),
    explain: str | None = typer.Option(
        None,
        "--explain",
        help="CONTROL, CLAUSE, CHAPTER or HOST: the figures with their formulas, and evidence.",
    ),
    at: str | None = typer.Option(
        None,
        "--at",
        help="Score the latest evidence as of this time (2026-12-04, 2026-12-04T18:00+08:00, "
        "+3d): what-if, e.g. which controls go stale by Friday. Not with --run.",
    ),
    policy_rev: str | None = typer.Option(
        None, "--policy-rev", help="Score under the policy at this git revision."
    ),
    availability: str | None = typer.Option(
        None,
        "--availability",
        help="Availability (7.1.1) per host over this period (e.g. 30d) from the daemon's scrapes.",
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON output."),
    inventory: str | None = typer.Option(
        None,
        "--inventory",
        "-i",
        help="The fleet scored from latest evidence (default: the configured inventory); "
        "hosts with evidence but not in it are listed as retired.",
    ),
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
    policy: str | None = PolicyOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Compliance scores: per host, chapter, clause and control; raw and effective; CI gates."""
    from opsrunner.reports.summary import (
        render_explain,
        render_stale_by,
        render_summary,
        summary_json,
    )
    from opsrunner.scoring import explain as explain_scores
    from opsrunner.scoring import gate, going_stale, partial, run_scores
    from opsrunner.scoring import score as compute
    from opsrunner.store import RunRecord

    settings = _settings(config_file, store=store, policy=policy, state_dir=state_dir)
    if availability:
        _availability(settings, parse_duration(availability), as_json, fail_under)
        return
    if view not in ("raw", "effective"):
        raise _fail(f"--view {view!r}: choose raw or effective")
    if kind not in ("automated", "manual", "all"):
        raise _fail(f"--kind {kind!r}: choose automated, manual or all")
    if at and run_key:
        raise _fail("--at scores the latest evidence at a time; a --run is scored as of its end")
    limits: dict[str, int] = {}
    for item in max_failed or []:
        name, _, number = item.partition("=")
        if name not in ("low", "medium", "high", "critical") or not number.isdigit():
            raise _fail(f"--max-failed {item!r}: give SEVERITY=N, e.g. critical=0")
        limits[name] = int(number)
    now = dt.datetime.now(dt.UTC)
    try:
        moment = parse_moment(at, now) if at else now
    except typer.BadParameter as exc:
        raise _fail(f"--at {exc}") from exc
    loaded = _load_policy(settings, policy_rev)
    chosen = model or settings.scoring_model
    stale_by: list[Any] = []
    scope = ""
    with _store(settings) as opened:
        if run_key:
            run = opened.get_run(run_key)
            assert run.id is not None
            hosts = opened.hosts(run.id)
            scope = partial(run, loaded)
            try:
                scores = run_scores(loaded, run, opened.results(run.id), hosts, model=chosen)
            except ValueError as exc:
                raise _fail(str(exc)) from exc
        else:
            fleet = _fleet(settings, inventory)
            latest = opened.latest_results(as_of=min(moment, now))
            try:
                scores = compute(loaded, latest, fleet, moment, model=chosen)
                if moment > now:
                    stale_by = going_stale(
                        compute(loaded, latest, fleet, now, model=chosen), scores
                    )
            except ValueError as exc:
                raise _fail(str(exc)) from exc
            hosts = []
            run = RunRecord(
                ident="latest-evidence" if moment == now else f"latest-evidence-at-{at}",
                mode="audit",
                status="successful",
                started_at=moment,
                ended_at=moment,
                policy_digest=loaded.digest(),
            )
    if explain:
        try:
            label, figures, items = explain_scores(scores, explain)
        except KeyError as exc:
            raise _fail(str(exc.args[0])) from exc
        typer.echo(render_explain(explain, label, scores, figures, items))
    elif as_json:
        data = summary_json(run, scores, scope)
        if at:
            data["stale_by"] = [
                {"host": i.target, "control": i.control_id, "evidence_at": str(i.evidence_at)}
                for i in stale_by
            ]
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        typer.echo(render_summary(run, scores, hosts, scope=scope))
        if moment > now:
            typer.echo(render_stale_by(stale_by, moment.isoformat(timespec="minutes")))
    problems = gate(scores, fail_under=fail_under, max_failed=limits, view=view, kind=kind)
    for problem in problems:
        typer.echo(f"gate: {problem}", err=True)
    if problems:
        raise typer.Exit(1)


def _availability(
    settings: config.Settings, period: dt.timedelta, as_json: bool, fail_under: float | None
) -> None:
    from opsrunner.scoring import availability

    end = dt.datetime.now(dt.UTC)
    start = end - period
    interval = dt.timedelta(seconds=settings.scrape_interval)
    with _store(settings) as opened:
        samples = opened.samples(since=start, until=end)
        hosts = set(opened.host_groups()) | {s.host for s in samples}
    figures = availability(samples, sorted(hosts), start, end, interval)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    h: {"ok": a.ok, "expected": a.expected, "percent": a.percent}
                    for h, a in figures.items()
                },
                indent=2,
                sort_keys=True,
            )
        )
    else:
        typer.echo(
            f"availability {start.isoformat(timespec='seconds')} → "
            f"{end.isoformat(timespec='seconds')}, one scrape every {interval}"
        )
        for host, figure in figures.items():
            shown = "n/a" if figure.percent is None else f"{figure.percent:.2f}%"
            typer.echo(
                f"  {host:<16} {shown:>8}  {figure.ok} of {figure.expected} scrapes answered"
            )
    low = [
        h for h, a in figures.items() if fail_under is not None and (a.percent or 0.0) < fail_under
    ]
    for host in low:
        typer.echo(f"gate: {host} availability under {fail_under:g}%", err=True)
    if low:
        raise typer.Exit(1)


# -- schedule and daemon -------------------------------------------------------------------------
def _jobs(settings: config.Settings) -> list[Any]:
    from opsrunner.runner.scope import site_roles
    from opsrunner.schedule import jobs_from_policy

    loaded = _load_policy(settings)
    playbooks = paths.project_root() / "playbooks"
    site = playbooks / "site.yml"
    roles = site_roles(site) if site.is_file() else []
    try:
        return jobs_from_policy(loaded, playbooks, overrides=settings.schedules, roles=roles)
    except ValueError as exc:
        raise _fail(str(exc)) from exc


@schedule_app.command("list")
def schedule_list(
    config_file: str | None = ConfigOpt,
    policy: str | None = PolicyOpt,
) -> None:
    """Every scheduled job, why it exists and when it runs next."""
    settings = _settings(config_file, policy=policy)
    now = dt.datetime.now(dt.UTC)
    for job in _jobs(settings):
        nxt = job.next_after(now).isoformat(timespec="minutes")
        scope = f" controls {len(job.controls)}" if job.controls else ""
        limit = f" limit {job.limit}" if job.limit else ""
        typer.echo(
            f"{job.name:<32} {job.mode:<8} '{job.cron}' {job.timezone:<14} "
            f"next {nxt}{scope}{limit}  # {job.why}"
        )


@schedule_app.command("next")
def schedule_next(
    count: int = typer.Option(10, "--count", "-n", help="How many upcoming runs."),
    config_file: str | None = ConfigOpt,
    policy: str | None = PolicyOpt,
) -> None:
    """The next runs across all jobs, soonest first."""
    from opsrunner.schedule import next_runs

    settings = _settings(config_file, policy=policy)
    now = dt.datetime.now(dt.UTC)
    for job, when in next_runs(_jobs(settings), now, count)[:count]:
        typer.echo(f"{when.isoformat(timespec='minutes')}  {job.name} ({job.mode})")


@schedule_app.command("export")
def schedule_export(
    systemd: Path | None = typer.Option(  # noqa: B008 - typer declares options as defaults
        None, "--systemd", help="Write .service/.timer units into this directory."
    ),
    cron: bool = typer.Option(False, "--cron", help="Print a crontab."),
    executable: str = typer.Option(
        "opsrunner", "--executable", help="The opsrunner command the units call."
    ),
    config_file: str | None = ConfigOpt,
    policy: str | None = PolicyOpt,
) -> None:
    """Export the schedule as systemd timers or a crontab (for people who prefer the OS)."""
    from opsrunner.schedule import export_cron, export_systemd

    if (systemd is None) == (not cron):
        raise _fail("give exactly one of --systemd DIR or --cron")
    settings = _settings(config_file, policy=policy)
    jobs = _jobs(settings)
    extra = ["--plain", "--no-summary"]
    if systemd is not None:
        systemd.mkdir(parents=True, exist_ok=True)
        for name, content in export_systemd(jobs, executable, extra).items():
            (systemd / name).write_text(content, encoding="utf-8")
            typer.echo(str(systemd / name))
    else:
        typer.echo(export_cron(jobs, executable, extra), nl=False)


def daemon(
    once: bool = typer.Option(
        False, "--once", help="Run what is due (and scrape once), then exit."
    ),
    scrape_interval: int | None = typer.Option(
        None, "--scrape-interval", help="Seconds between scrapes."
    ),
    scrape_timeout: float | None = typer.Option(
        None, "--scrape-timeout", help="Seconds one scrape may take."
    ),
    inventory: str | None = InventoryOpt,
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
    policy: str | None = PolicyOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Run due jobs (a missed one once, recorded late), skip overlaps, scrape node exporters."""
    import logging

    from opsrunner.runner.run import run
    from opsrunner.runner.scope import ScopeError, host_vars
    from opsrunner.schedule import Daemon

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    settings = _settings(
        config_file,
        store=store,
        inventory=inventory,
        policy=policy,
        state_dir=state_dir,
        scrape_interval=scrape_interval,
        scrape_timeout=scrape_timeout,
    )
    inv = config.inventory(settings)
    try:
        hostvars = host_vars(inv)
    except ScopeError as exc:
        raise _fail(str(exc)) from exc
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    with _store(settings) as opened:
        Daemon(settings, opened, _jobs(settings), inv, runner=run, hostvars=hostvars).serve(
            stop, once=once
        )


# -- store ---------------------------------------------------------------------------------------
@store_app.command("info")
def store_info(
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Where the store is, its schema revision and how many runs it holds."""
    settings = _settings(config_file, store=store, state_dir=state_dir)
    with _store(settings) as opened:
        url = opened.engine.url.render_as_string(hide_password=True)
        typer.echo(f"store {url} ({opened.dialect}), schema {opened.schema_revision()}")
        typer.echo(
            f"runs {len(opened.list_runs(limit=1_000_000))}, samples {len(opened.samples())}"
        )


@store_app.command("prune")
def store_prune(
    older_than: str | None = typer.Option(
        None,
        "--older-than",
        help="Age, e.g. 400d, 12w: runs and samples older than this (default: retention_days).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count, delete nothing."),
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Delete old runs and samples; runs holding a control's newest evidence are kept."""
    from opsrunner.runner import evidence

    settings = _settings(config_file, store=store, state_dir=state_dir)
    age = parse_duration(older_than) if older_than else dt.timedelta(days=settings.retention_days)
    cutoff = dt.datetime.now(dt.UTC) - age
    with _store(settings) as opened:
        counts = opened.prune(cutoff, dry_run=dry_run)
        files = (
            0
            if dry_run
            else evidence.prune_files(config.state_dir(settings), opened.evidence_hashes())
        )
    verb = "would delete" if dry_run else "deleted"
    typer.echo(
        f"{verb} {counts['runs']} runs ({counts['results']} results) "
        f"and {counts['samples']} samples "
        f"older than {cutoff.isoformat(timespec='seconds')}; "
        f"kept {counts['kept_runs']} old runs that hold "
        f"the latest evidence; {files} evidence files and "
        f"{counts.get('evidence', 0)} stored evidence reports removed"
    )


@store_app.command("export")
def store_export(
    target: Path = typer.Argument(..., help="File to write (JSON lines)."),  # noqa: B008
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Export the whole store (backup, or migration between SQLite and PostgreSQL)."""
    settings = _settings(config_file, store=store, state_dir=state_dir)
    with _store(settings) as opened:
        counts = opened.export(target)
    typer.echo(f"{target}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@store_app.command("import")
def store_import(
    source: Path = typer.Argument(..., help="A file written by `store export`."),  # noqa: B008
    store: str | None = StoreOpt,
    config_file: str | None = ConfigOpt,
    state_dir: str | None = StateOpt,
) -> None:
    """Import an export; runs already present are left alone, so repeating it is safe."""
    if not source.is_file():
        raise _fail(f"{source}: no such file")
    settings = _settings(config_file, store=store, state_dir=state_dir)
    with _store(settings) as opened:
        counts = opened.import_(source)
    typer.echo(f"{source}: imported " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def register(app: typer.Typer) -> None:
    """Attach the runner's commands and groups to the root command."""
    app.command("audit")(_audit_like("audit"))
    app.command("enforce")(_audit_like("enforce"))
    app.command("operate")(operate)
    app.command("score")(score)
    app.command("daemon")(daemon)
    app.add_typer(runs_app, name="runs")
    app.add_typer(schedule_app, name="schedule")
    app.add_typer(store_app, name="store")


__all__ = ["EXIT_SKIPPED", "parse_duration", "register"]
