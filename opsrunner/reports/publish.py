"""Write a run's report files and metrics in one call (for the demo and the daemon)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from opsrunner.reports import metrics
from opsrunner.reports.document import build
from opsrunner.reports.render import render
from opsrunner.store import Store


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


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
    out.mkdir(parents=True, exist_ok=True)
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
        _atomic(written[key], text)
    if textfile_dir is not None:
        written["metrics"] = metrics.write_textfile(
            textfile_dir, document, store.list_runs(limit=1_000_000)
        )
    return written
