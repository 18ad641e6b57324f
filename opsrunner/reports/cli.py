"""`opsrunner report`, `opsrunner metrics` and `opsrunner policy diff`."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import typer

from opsrunner import config

ConfigOpt = typer.Option(
    None, "--config", help="Config file (else $OPSRUNNER_CONFIG, ./opsrunner.yml, ~/.config)."
)
StoreOpt = typer.Option(
    None, "--store", help="Store: sqlite path/URL or postgresql://… (default: SQLite in state dir)."
)
PolicyOpt = typer.Option(None, "--policy", help="Policy directory (default: policy/).")
StateOpt = typer.Option(None, "--state-dir", help="State directory (store, evidence, artifacts).")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def _opened(config_file: str | None, **flags: Any) -> Iterator[tuple[Any, Any]]:
    from opsrunner.policy import PolicyError, load_policy
    from opsrunner.store import Store, StoreError

    try:
        settings = config.load(config_file, **flags)
    except config.ConfigError as exc:
        raise _fail(str(exc)) from exc
    try:
        policy = load_policy(Path(settings.policy) if settings.policy else None)
    except PolicyError as exc:
        raise _fail(f"the policy does not load:\n{exc}") from exc
    try:
        store = Store.open(settings.store, config.state_dir(settings))
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    try:
        yield store, policy
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    finally:
        store.close()


def _write(text: str | Callable[[TextIO], None], output: str | None) -> None:
    """Write a report (its text, or a writer that streams it) to a file or stdout."""
    put = text if callable(text) else lambda out: out.write(text)
    if output is None or output == "-":
        put(sys.stdout)
        return
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            put(out)
        tmp.replace(path)
    except OSError as exc:  # a full disk: the old report stays whole, no partial file left
        tmp.unlink(missing_ok=True)
        raise _fail(f"{path}: the report was not written: {exc.strerror or exc}") from exc
    typer.echo(str(path), err=True)


def report(
    run: str = typer.Argument("latest", help="Run id or ident (prefix), or latest."),
    fmt: str = typer.Option(
        "html",
        "--format",
        "-f",
        help=(
            "html, md, json, junit, sarif, csv, xccdf, oscal, oscal-catalog,"
            " oscal-components, text."
        ),
    ),
    lang: str = typer.Option("en", "--lang", help="en or zh (HTML and Markdown)."),
    level: str = typer.Option(
        "auditor", "--level", help="executive (one page), manager, auditor (everything)."
    ),
    output: str | None = typer.Option(None, "--output", "-o", help="File (default: stdout)."),
    model: str | None = typer.Option(None, "--model", help="Scoring model (default: policy's)."),
    store: str | None = StoreOpt,
    state_dir: str | None = StateOpt,
    policy: str | None = PolicyOpt,
    config_file: str | None = ConfigOpt,
) -> None:
    """Render a stored run's report, as of the run's end: the same run gives the same bytes."""
    from opsrunner.reports import FORMATS, build, render
    from opsrunner.reports.html import LEVELS
    from opsrunner.reports.i18n import LANGS

    if fmt not in FORMATS:
        raise _fail(f"--format {fmt}: choose {', '.join(FORMATS)}")
    if lang not in LANGS:
        raise _fail(f"--lang {lang}: choose {', '.join(LANGS)}")
    if level not in LEVELS:
        raise _fail(f"--level {level}: choose {', '.join(LEVELS)}")
    with _opened(config_file, store=store, state_dir=state_dir, policy=policy) as (opened, pol):
        document = build(opened, pol, run, model=model)
        if fmt == "json":  # streamed: a fleet's matrix never exists as one string
            _write(document.write_json, output)
        else:
            _write(render(document, fmt, level=level, lang=lang), output)


def metrics(
    run: str = typer.Argument("latest", help="Run id or ident (prefix), or latest."),
    textfile: str | None = typer.Option(
        None,
        "--textfile",
        help="node-exporter textfile directory: writes DIR/opsrunner.prom atomically.",
    ),
    store: str | None = StoreOpt,
    state_dir: str | None = StateOpt,
    policy: str | None = PolicyOpt,
    config_file: str | None = ConfigOpt,
) -> None:
    """Compliance per host, control and chapter as gauges; runs and failures as counters."""
    from opsrunner.reports import build
    from opsrunner.reports import metrics as prom

    with _opened(config_file, store=store, state_dir=state_dir, policy=policy) as (opened, pol):
        document = build(opened, pol, run)
        runs = opened.list_runs(limit=1_000_000)
        if textfile:
            typer.echo(str(prom.write_textfile(Path(textfile), document, runs)))
        else:
            sys.stdout.write(prom.render(document, runs))


def policy_diff(
    revisions: str = typer.Argument(..., help="REV1..REV2 (git revisions of policy/)."),
    fmt: str = typer.Option("text", "--format", "-f", help="text, md or json."),
    gate: float | None = typer.Option(
        90.0, "--gate", help="Name the hosts this change moves across this score."
    ),
    at: str | None = typer.Option(
        None, "--at", help="Score and judge expiry at this UTC time (default: now)."
    ),
    store: str | None = StoreOpt,
    state_dir: str | None = StateOpt,
    policy: str | None = PolicyOpt,
    config_file: str | None = ConfigOpt,
) -> None:
    """What changed in policy/ between two revisions, and the projected effect per host."""
    from opsrunner.policy import PolicyError, default_policy_dir
    from opsrunner.reports import diff
    from opsrunner.store import Store, StoreError

    if ".." not in revisions:
        raise _fail("give two revisions as REV1..REV2")
    rev1, rev2 = revisions.split("..", 1)
    if fmt not in ("text", "md", "json"):
        raise _fail(f"--format {fmt}: choose text, md or json")
    try:
        when = (
            dt.datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(dt.UTC)
            if at
            else dt.datetime.now(dt.UTC)
        )
    except ValueError as exc:
        raise _fail(f"--at {at}: {exc}") from exc
    try:
        settings = config.load(config_file, store=store, state_dir=state_dir, policy=policy)
    except config.ConfigError as exc:
        raise _fail(str(exc)) from exc
    where = Path(settings.policy) if settings.policy else default_policy_dir()
    try:
        old = diff.policy_at(where, rev1 or "HEAD")
        new = diff.policy_at(where, rev2 or "HEAD")
    except (diff.DiffError, PolicyError) as exc:
        raise _fail(str(exc)) from exc
    try:
        with Store.open(settings.store, config.state_dir(settings)) as opened:
            results = opened.latest_results(as_of=when)
            hosts = opened.host_groups()
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    found = diff.changes(old, new, when)
    projected = diff.effects(old, new, results, hosts, when)
    sys.stdout.write(diff.render(rev1, rev2, found, projected, fmt=fmt, gate=gate))


def register(app: typer.Typer) -> None:
    """Add `report` and `metrics` to the root command, and `diff` to its `policy` group."""
    app.command("report")(report)
    app.command("metrics")(metrics)
    for group in app.registered_groups:
        if group.name == "policy" and group.typer_instance is not None:
            group.typer_instance.command("diff")(policy_diff)
