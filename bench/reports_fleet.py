"""Bench: the report of a large fleet (default 10,000 hosts x 200 controls) — time and size.

Run: .venv/bin/python -m bench.reports_fleet [--hosts 10000] [--controls 200] [--out DIR]
Scores synthetic results in memory (the project's policy, its automated controls cloned up to
--controls), builds the canonical document, renders HTML (auditor) and JSON, and prints each
step's seconds, the HTML and JSON sizes, and the ratio of rendering to scoring time.
Timings are never asserted in tests; the HTML's size bound (20 MB) is what this checks.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from opsrunner.policy import load_policy
from opsrunner.reports import assemble, render
from opsrunner.scoring import MODELS, score
from opsrunner.scoring.models import with_model
from opsrunner.store import HostRecord, ResultRecord, RunRecord

T = TypeVar("T")
STATUSES = ("pass",) * 12 + ("fail", "fail", "error", "unknown", "notapplicable")


def measure(hosts_count: int, controls_count: int, out: Path) -> dict[str, float]:
    """Score and render the fleet into `out`; seconds of each step and the sizes in MB."""
    policy = load_policy()
    automated = [c for c in policy.controls if c.kind == "automated" and "all" in c.applies_to]
    controls = [
        automated[n % len(automated)].model_copy(
            update={"id": f"{automated[n % len(automated)].family}-{900 + n:04d}"}
        )
        for n in range(controls_count)
    ]
    fleet = dataclasses.replace(policy, controls=tuple(controls))
    at = dt.datetime(2026, 11, 3, 3, 0, tzinfo=dt.UTC)
    hosts = [
        HostRecord(f"host{n:05d}", groups=("standard", f"rack{n % 40}")) for n in range(hosts_count)
    ]
    started = time.perf_counter()
    results = [
        ResultRecord(
            h.host,
            c.id,
            STATUSES[(i * 31 + j * 7) % len(STATUSES)],
            at,
            reason="",
            evidence="probe output " + c.id,
        )
        for i, h in enumerate(hosts)
        for j, c in enumerate(controls)
    ]
    t_results = time.perf_counter() - started
    run = RunRecord("bench", "audit", "successful", at, id=1, ended_at=at)

    steps: dict[str, float] = {}

    def timed(name: str, work: Callable[[], T]) -> T:
        wall, cpu = time.perf_counter(), time.process_time()
        value = work()
        steps[f"{name}_s"] = time.perf_counter() - wall
        steps[f"{name}_cpu_s"] = time.process_time() - cpu
        return value

    groups = {h.host: list(h.groups) for h in hosts}
    scores = timed("score", lambda: score(fleet, results, groups, at))
    # Every other model on the same items (the report shows the policy's; --model the others).
    for model in MODELS:
        if model != scores.model:
            timed(f"score_{model}", lambda m=model: with_model(scores, m))
    document = timed("document", lambda: assemble(fleet, run, results, hosts, scores))
    html = timed("html", lambda: render(document, "html", level="auditor"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(html, encoding="utf-8")
    path = out / "report.json"

    def write_json() -> None:
        # As `opsrunner report -f json -o FILE` does: streamed to the file, never one string.
        with path.open("w", encoding="utf-8") as f:
            document.write_json(f)

    timed("json", write_json)
    models_cpu = sum(steps[f"score_{m}_cpu_s"] for m in MODELS if m != scores.model)
    return {
        "results": float(len(results)),
        "results_s": t_results,
        **steps,
        "score_all_models_cpu_s": steps["score_cpu_s"] + models_cpu,
        "html_mb": len(html.encode()) / 1e6,
        "json_mb": path.stat().st_size / 1e6,
    }


def main() -> None:
    """Measure one fleet and print each step's seconds and the sizes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--controls", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="opsrunner-bench-"))
    m = measure(args.hosts, args.controls, out)
    print(f"{args.hosts} hosts x {args.controls} controls = {m['results']:.0f} results")
    print(
        f"results {m['results_s']:.1f}s  score {m['score_s']:.1f}s  document {m['document_s']:.1f}s"
    )
    print(
        f"html {m['html_s']:.1f}s {m['html_mb']:.1f} MB  json {m['json_s']:.1f}s "
        f"{m['json_mb']:.1f} MB  -> {out}"
    )
    print(f"ratio (document + html) / score = {(m['document_s'] + m['html_s']) / m['score_s']:.2f}")
    print(f"html under 20 MB: {'yes' if m['html_mb'] < 20 else 'NO'}")


if __name__ == "__main__":
    main()
