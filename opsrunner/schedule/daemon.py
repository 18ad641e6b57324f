"""`opsrunner daemon`: run due jobs (a missed one once, late), scrape exporters, notify."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from opsrunner import config
from opsrunner.schedule.jobs import Due, Job, due_jobs
from opsrunner.store import RunRecord, SampleRecord, Store

log = logging.getLogger("opsrunner.daemon")

DEFAULT_EXPORTER_PORT = 9100
# The few node-exporter series worth keeping per scrape; the rest stays on the host.
KEPT = (
    "node_load1",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemTotal_bytes",
    "node_boot_time_seconds",
    "node_time_seconds",
)

Runner = Callable[..., RunRecord]


def exporter_targets(hostvars: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """host -> http://<ansible_host>:<monitoring_exporter_port or 9100>/metrics."""
    out = {}
    for host, values in sorted(hostvars.items()):
        address = str(values.get("ansible_host") or host)
        port = int(values.get("monitoring_exporter_port") or DEFAULT_EXPORTER_PORT)
        if ":" in address and not address.startswith("["):
            address = f"[{address}]"
        out[host] = f"http://{address}:{port}/metrics"
    return out


def scrape(host: str, url: str, timeout: float, now: dt.datetime | None = None) -> SampleRecord:
    """One scrape: ok when the exporter answers 200 with node_* series."""
    at = now or dt.datetime.now(dt.UTC)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http only, inventory host
            body = response.read(4_000_000).decode("utf-8", "replace")
            status = response.status
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return SampleRecord(
            host, at, ok=False, target=url, duration_ms=_ms(started), error=str(reason)[:500]
        )
    metrics: dict[str, Any] = {}
    try:
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name in KEPT and sample.name not in metrics:
                    metrics[sample.name] = sample.value
    except ValueError as exc:
        return SampleRecord(
            host, at, ok=False, target=url, duration_ms=_ms(started), error=f"bad metrics: {exc}"
        )
    ok = status == 200 and any(name.startswith("node_") for name in metrics)
    error = "" if ok else f"HTTP {status}, no node_* series"
    return SampleRecord(
        host, at, ok=ok, target=url, duration_ms=_ms(started), error=error, metrics=metrics
    )


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


class Daemon:
    """Runs due jobs one at a time and scrapes every scrape_interval; stops when `stop` is set."""

    def __init__(
        self,
        settings: config.Settings,
        store: Store,
        jobs: Sequence[Job],
        inventory: Path,
        *,
        runner: Runner,
        hostvars: Mapping[str, Mapping[str, Any]] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        notifier: Callable[[dt.datetime], object] | None = None,
        publisher: Callable[[RunRecord], object] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.jobs = list(jobs)
        self.inventory = inventory
        self.runner = runner
        self.targets = exporter_targets(hostvars or {})
        self.clock = clock
        # Notices and alerts (opsrunner.notify); serve() builds the policy's when none is given.
        self.notifier = notifier
        # The latest report and metrics after each run (opsrunner.reports); likewise.
        self.publisher = publisher

    def due(self) -> list[Due]:
        """What is due now, by the runs on record."""
        return due_jobs(self.jobs, self.store.list_runs(limit=5000), self.clock())

    def run_due(self, cancel: threading.Event | None = None) -> list[RunRecord]:
        """Run every due job once (a missed one is recorded late); return the recorded runs."""
        done = []
        for item in self.due():
            if cancel is not None and cancel.is_set():
                break
            job = item.job
            log.info(
                "running %s (scheduled %s%s)",
                job.name,
                item.scheduled_for.isoformat(),
                ", late" if item.late else "",
            )
            record = self.runner(
                job.mode,
                self.inventory,
                limit=job.limit or None,
                controls=list(job.controls) or None,
                job=job.operate_job or job.name,
                store=self.store,
                settings=self.settings,
                scheduled_for=item.scheduled_for,
                late=item.late,
                cancel=cancel,
                **self._notice_vars(job),
            )
            log.info("%s: %s", job.name, record.status)
            done.append(record)
            self.publish(record)
        return done

    def publish(self, record: RunRecord) -> None:
        """Refresh the latest report and the metrics textfile; never stops the loop."""
        if self.publisher is None or record.status == "skipped":
            return
        try:
            self.publisher(record)
        except Exception:  # a report that cannot be written must not stop the schedule
            log.exception("the report of %s was not written", record.ident)

    def _notice_vars(self, job: Job) -> dict[str, Any]:
        """Audit and enforce jobs get the store's notices on record (the patching role reads
        them: PAT-006, and enforce defers without one)."""
        if job.mode not in ("audit", "enforce"):
            return {}
        from opsrunner.notify.notices import ansible_vars

        return {"extravars": ansible_vars(self.store)}

    def notify(self) -> None:
        """Send due notices, evaluate alerts, retry undelivered messages; never stops the loop."""
        if self.notifier is None:
            return
        try:
            self.notifier(self.clock())
        except Exception:  # a broken channel or policy must not stop the schedule
            log.exception("notices and alerts failed this round")

    def scrape_once(self) -> list[SampleRecord]:
        """Scrape every host's exporter once and record the samples in one transaction."""
        now = self.clock()
        samples = [
            scrape(h, url, self.settings.scrape_timeout, now) for h, url in self.targets.items()
        ]
        self.store.add_samples(samples)
        return samples

    def serve(self, stop: threading.Event, *, once: bool = False) -> None:
        """The loop: due jobs first (catching up once), then scrapes and jobs as they fall due."""
        from opsrunner.notify.daemon import default_notifier
        from opsrunner.runner.run import recover_stale

        if self.notifier is None:
            self.notifier = default_notifier(self.settings, self.store, self.inventory)
        if self.publisher is None:
            from opsrunner.reports.publish import for_daemon

            self.publisher = for_daemon(self.settings, self.store)

        for record in recover_stale(self.store, self.settings.run_timeout, self.clock()):
            log.info("recovered %s from its artifacts: %s", record.ident, record.status)
        interval = float(self.settings.scrape_interval)
        next_scrape = time.monotonic()
        while not stop.is_set():
            if self.targets and time.monotonic() >= next_scrape:
                self.scrape_once()
                next_scrape = time.monotonic() + interval
            self.run_due(cancel=stop)
            self.notify()
            if once:
                return
            now = self.clock()
            upcoming = min(
                (j.next_after(now) for j in self.jobs), default=now + dt.timedelta(hours=1)
            )
            wait = min(
                (upcoming - now).total_seconds(),
                max(0.0, next_scrape - time.monotonic()) if self.targets else 3600.0,
            )
            stop.wait(max(1.0, min(wait, 60.0)))
