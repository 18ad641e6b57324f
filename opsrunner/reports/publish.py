"""Write a run's report files and metrics in one call (for the demo and the daemon)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from opsrunner import paths
from opsrunner.reports import metrics
from opsrunner.reports.document import build
from opsrunner.reports.render import render
from opsrunner.store import RunRecord, Store


def publish(
    store: Store,
    policy: Any,
    run: int | str = "latest",
    directory: Path | None = None,
    *,
    textfile_dir: Path | None = None,
    lang: str = "en",
) -> dict[str, Path]:
    """report-<ident>.html/.json plus latest.html/latest.json in `directory`; metrics if asked.

    Returns the paths written by name (html, json, latest_html, latest_json, metrics).
    """
    document = build(store, policy, run)
    out = directory or store.state_dir / "reports"
    paths.private_dir(out, tighten=False)
    ident = document["run"]["ident"]
    html = render(document, "html", level="auditor", lang=lang)
    data = render(document, "json")
    written = {
        "html": out / f"report-{ident}.html",
        "json": out / f"report-{ident}.json",
        "latest_html": out / "latest.html",
        "latest_json": out / "latest.json",
    }
    for key, text in (
        ("html", html),
        ("json", data),
        ("latest_html", html),
        ("latest_json", data),
    ):
        # Owner-only whatever the umask: a report names every finding of every host.
        paths.write_private(written[key], text)
    if textfile_dir is not None:
        written["metrics"] = metrics.write_textfile(
            textfile_dir, document, store.list_runs(limit=1_000_000)
        )
    return written


def for_daemon(settings: Any, store: Store) -> Callable[[RunRecord], dict[str, Path]]:
    """What the daemon calls after each run: the run's report (an audit's or enforce's own; the
    newest audit's after an operate job) and the metrics textfile, under the state directory
    (`<state>/reports/latest.html`, `<state>/metrics/opsrunner.prom` for node-exporter)."""

    def publish_run(run: RunRecord) -> dict[str, Path]:
        from opsrunner.policy import load_policy

        policy = load_policy(Path(settings.policy) if settings.policy else None)
        key: int | str = run.ident if run.mode in ("audit", "enforce") else "latest"
        return publish(
            store,
            policy,
            key,
            store.state_dir / "reports",
            textfile_dir=store.state_dir / "metrics",
        )

    return publish_run
