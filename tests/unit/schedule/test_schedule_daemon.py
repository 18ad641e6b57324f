"""The daemon runs what is due through the runner and scrapes node exporters into the store."""

from __future__ import annotations

import datetime as dt
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsrunner.config import Settings
from opsrunner.schedule import Daemon, Job, exporter_targets
from opsrunner.scoring import availability
from opsrunner.store import RunRecord, Store

NOW = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)
METRICS = b"""# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.25
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 1.5e+09
"""


class _Exporter(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = METRICS if self.path == "/metrics" else b"not here"
        self.send_response(200 if self.path == "/metrics" else 404)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def exporter() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_targets_use_ansible_host_and_the_port_var() -> None:
    got = exporter_targets(
        {"web1": {"ansible_host": "10.99.0.11", "monitoring_exporter_port": 9200}, "db1": {}}
    )
    assert got == {"db1": "http://db1:9100/metrics", "web1": "http://10.99.0.11:9200/metrics"}


def test_scrapes_go_into_the_store_and_give_availability(tmp_path: Path, exporter: int) -> None:
    hostvars = {
        "up": {"ansible_host": "127.0.0.1", "monitoring_exporter_port": exporter},
        "down": {"ansible_host": "127.0.0.1", "monitoring_exporter_port": 9},  # closed port
    }
    clock = iter(NOW + dt.timedelta(minutes=n) for n in range(10))
    with Store.open(None, tmp_path) as store:
        daemon = Daemon(
            Settings(scrape_timeout=2.0),
            store,
            [],
            tmp_path / "inv",
            runner=_no_runner,
            hostvars=hostvars,
            clock=lambda: next(clock),
        )
        for _ in range(3):
            daemon.scrape_once()
        samples = store.samples()
        up = [s for s in samples if s.host == "up"]
        assert [s.ok for s in up] == [True, True, True]
        assert up[0].metrics == {"node_load1": 0.25, "node_memory_MemAvailable_bytes": 1.5e9}
        down = [s for s in samples if s.host == "down"]
        assert [s.ok for s in down] == [False] * 3 and down[0].error
        got = availability(
            samples, ["up", "down"], NOW, NOW + dt.timedelta(minutes=4), dt.timedelta(minutes=1)
        )
        assert (got["up"].ok, got["up"].expected, got["down"].ok) == (3, 4, 0)


def _no_runner(*args: Any, **kwargs: Any) -> RunRecord:
    raise AssertionError("nothing should run")


def test_run_due_passes_the_schedule_to_the_runner(tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []

    def runner(mode: str, inventory: Path, **kwargs: Any) -> RunRecord:
        calls.append({"mode": mode, **kwargs})
        store: Store = kwargs["store"]
        return store.begin_run(
            RunRecord(
                ident=f"r{len(calls)}",
                mode=mode,
                job=kwargs["job"],
                status="successful",
                started_at=NOW,
                scheduled_for=kwargs["scheduled_for"],
                late=kwargs["late"],
            )
        )

    jobs = [
        Job("audit-daily", "audit", "0 3 * * *", controls=("FW-001",)),
        Job("operate-backup", "operate", "0 12 * * *", operate_job="backup"),
    ]
    with Store.open(None, tmp_path) as store:
        daemon = Daemon(Settings(), store, jobs, tmp_path / "inv", runner=runner, clock=lambda: NOW)
        first = daemon.run_due()
        assert [(r.mode, r.job, r.late) for r in first] == [
            ("audit", "audit-daily", True),
            ("operate", "backup", True),
        ]
        assert calls[0]["controls"] == ["FW-001"] and calls[1]["job"] == "backup"
        assert daemon.run_due() == []  # once, not once per missed day


def test_the_daemon_writes_the_report_and_metrics_after_each_run(tmp_path: Path) -> None:
    from opsrunner.reports.publish import for_daemon
    from opsrunner.store import HostRecord, ResultRecord

    def runner(mode: str, inventory: Path, **kwargs: Any) -> RunRecord:
        store: Store = kwargs["store"]
        run = store.begin_run(RunRecord(kwargs["job"], mode, "running", NOW, job=kwargs["job"]))
        assert run.id is not None
        store.add_results(run.id, [ResultRecord("host1", "FW-001", "fail", NOW, reason="8080")])
        store.set_hosts(run.id, [HostRecord("host1", groups=("critical",))])
        return store.finish_run(run.id, "successful", ended_at=NOW)

    published: list[str] = []
    jobs = [Job("audit-daily", "audit", "0 3 * * *"), Job("later", "audit", "0 4 * * *")]
    with Store.open(None, tmp_path) as store:
        real = for_daemon(Settings(), store)

        def publisher(run: RunRecord) -> object:
            published.append(run.ident)
            if run.ident == "later":
                raise OSError("disk full")  # logged; the schedule goes on
            return real(run)

        daemon = Daemon(
            Settings(),
            store,
            jobs,
            tmp_path / "inv",
            runner=runner,
            clock=lambda: NOW,
            publisher=publisher,
        )
        assert [r.ident for r in daemon.run_due()] == ["audit-daily", "later"]
    assert published == ["audit-daily", "later"]
    latest = (tmp_path / "reports" / "latest.html").read_text(encoding="utf-8")
    assert "audit-daily" in latest and "FW-001" in latest
    metrics = (tmp_path / "metrics" / "opsrunner.prom").read_text(encoding="utf-8")
    assert 'host="host1"' in metrics
