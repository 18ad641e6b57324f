"""Prometheus metrics for node-exporter's textfile collector, from the report document."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from opsrunner.reports.document import Report
from opsrunner.reports.safe import one_line
from opsrunner.store import RunRecord

FILENAME = "opsrunner.prom"


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


class _ReportCollector(Collector):
    def __init__(self, report: Report, runs: Sequence[RunRecord]) -> None:
        self.report = report
        self.runs = runs

    def collect(self) -> Iterator[Metric]:
        d = self.report.data
        views = ("raw", "effective")
        overall = GaugeMetricFamily(
            "opsrunner_compliance_score_percent",
            "Compliance score of the latest report (0-100), per view and kind of control.",
            labels=["view", "kind"],
        )
        for view in views:
            for kind in ("automated", "manual", "all"):
                value = d["scores"][view][kind]["percent"]
                if value is not None:
                    overall.add_metric([view, kind], value)
        yield overall
        for name, rows, key, label in (
            ("host", d["hosts"], "host", "host"),
            ("chapter", d["chapters"], "number", "chapter"),
            ("control", d["controls"], "id", "control"),
        ):
            family = GaugeMetricFamily(
                f"opsrunner_{name}_compliance_score_percent",
                f"Compliance score per {name} (0-100), per view, all kinds of control.",
                labels=[label, "view"],
            )
            for row in rows:
                for view in views:
                    value = row["scores"][view]["all"]["percent"]
                    if value is not None:
                        family.add_metric([one_line(row[key]), view], value)
            yield family
        results = GaugeMetricFamily(
            "opsrunner_results",
            "Host x control results of the latest report, per effective status.",
            labels=["status"],
        )
        for status, count in d["totals"]["effective"].items():
            results.add_metric([status], count)
        yield results
        as_of = _ts(d["as_of"]) or 0.0
        oldest: dict[str, float] = {}
        for row in d["results"]:
            at = _ts(row["evidence_at"])
            if at is not None:
                oldest[row["host"]] = min(oldest.get(row["host"], at), at)
        age = GaugeMetricFamily(
            "opsrunner_host_evidence_age_seconds",
            "Age of each host's oldest evidence at the report's time.",
            labels=["host"],
        )
        for host in sorted(oldest):
            age.add_metric([one_line(host)], max(as_of - oldest[host], 0.0))
        yield age
        last = GaugeMetricFamily(
            "opsrunner_report_timestamp_seconds", "End of the run the metrics describe."
        )
        last.add_metric([], as_of)
        yield last
        counts: dict[tuple[str, str], int] = {}
        for run in self.runs:
            counts[(run.mode, run.status)] = counts.get((run.mode, run.status), 0) + 1
        total = CounterMetricFamily(
            "opsrunner_runs",
            "Runs recorded in the store, per mode and status.",
            labels=["mode", "status"],
        )
        failed = CounterMetricFamily(
            "opsrunner_run_failures",
            "Runs that did not end successful, per mode.",
            labels=["mode"],
        )
        failures: dict[str, int] = {}
        for (mode, status), n in sorted(counts.items()):
            total.add_metric([mode, status], n)
            if status not in ("successful", "running"):
                failures[mode] = failures.get(mode, 0) + n
        for mode, n in sorted(failures.items()):
            failed.add_metric([mode], n)
        yield total
        yield failed


def registry(report: Report, runs: Iterable[RunRecord] = ()) -> CollectorRegistry:
    """A registry holding the report's gauges and the store's run counters."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_ReportCollector(report, list(runs)))
    return reg


def render(report: Report, runs: Iterable[RunRecord] = ()) -> str:
    """The metrics in Prometheus' text exposition format."""
    return generate_latest(registry(report, runs)).decode("utf-8")


def write_textfile(directory: Path, report: Report, runs: Iterable[RunRecord] = ()) -> Path:
    """Write DIR/opsrunner.prom atomically (a temporary file renamed over the old one)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILENAME
    write_to_textfile(str(path), registry(report, runs))
    return path
