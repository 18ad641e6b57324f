"""The monitoring role's threshold filter on a synthetic node-exporter scrape (no lab needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILTER = ROOT / "roles/monitoring/filter_plugins/monitoring_metrics.py"

SCRAPE = """\
# HELP node_filesystem_size_bytes Filesystem size in bytes.
# TYPE node_filesystem_size_bytes gauge
node_filesystem_size_bytes{device="overlay",fstype="overlay",mountpoint="/"} 1000
node_filesystem_size_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/mnt/full"} 200
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="overlay",fstype="overlay",mountpoint="/"} 400
node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/mnt/full"} 0
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 1000
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 50
# TYPE node_load15 gauge
node_load15 9
# TYPE node_load1 gauge
node_load1 1
# TYPE node_load5 gauge
node_load5 2
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 10
node_cpu_seconds_total{cpu="1",mode="idle"} 10
# TYPE node_systemd_unit_state gauge
node_systemd_unit_state{name="cron.service",state="active",type="simple"} 1
node_systemd_unit_state{name="cron.service",state="failed",type="simple"} 0
node_systemd_unit_state{name="broken.service",state="failed",type="simple"} 1
node_systemd_unit_state{name="broken.service",state="active",type="simple"} 0
node_systemd_unit_state{name="rsyslog.service",state="inactive",type="notify"} 1
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{device="host0"} 5
"""

STRICT: dict[str, Any] = {
    "disk_max_used_percent": 90,
    "memory_min_available_percent": 10,
    "load_max_per_cpu": 4.0,
    "failed_units_max": 0,
}
LOOSE: dict[str, Any] = {
    "disk_max_used_percent": 100,
    "memory_min_available_percent": 1,
    "load_max_per_cpu": 5.0,
    "failed_units_max": 1,
}


@pytest.fixture(scope="module")
def metrics() -> ModuleType:
    spec = importlib.util.spec_from_file_location("monitoring_metrics", FILTER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["monitoring_metrics"] = module
    spec.loader.exec_module(module)
    return module


def test_every_threshold_fails_with_the_sample_named(metrics: ModuleType) -> None:
    checks = [
        {"name": "dumps", "unit": "cron.service"},
        {"name": "logs", "unit": "rsyslog.service"},
    ]
    out = metrics.monitoring_evaluate(SCRAPE, STRICT, checks)["controls"]
    assert out["MON-003"]["problems"] == ["/mnt/full is 100.0% full > 90.0%"]
    assert "memory available 5.0% < 10.0%" in out["MON-004"]["problems"]
    assert "15-minute load 9.0 on 2 CPU(s) = 4.5 per CPU > 4.0" in out["MON-004"]["problems"]
    assert out["MON-005"]["data"]["failed"] == ["broken.service"] and not out["MON-005"]["ok"]
    assert out["MON-006"]["problems"] == ["logs: rsyslog.service is inactive, want active"]


def test_the_same_samples_pass_looser_thresholds(metrics: ModuleType) -> None:
    result = metrics.monitoring_evaluate(SCRAPE, LOOSE, [{"name": "dumps", "unit": "cron.service"}])
    assert all(v["ok"] for v in result["controls"].values()), result
    # The evidence keeps the samples the verdicts used, not the whole scrape.
    disk = result["controls"]["MON-003"]["data"]["filesystems"]
    root = {"mountpoint": "/", "size_bytes": 1000.0, "avail_bytes": 400.0, "used_percent": 60.0}
    assert root in disk
    assert result["samples_kept"] == 16 and len(result["scrape_sha256"]) == 64


def test_an_absent_unit_and_empty_scrape_are_named(metrics: ModuleType) -> None:
    out = metrics.monitoring_evaluate(SCRAPE, LOOSE, [{"name": "db", "unit": "postgresql.service"}])
    want = ["db: postgresql.service is absent, want active"]
    assert out["controls"]["MON-006"]["problems"] == want
    from ansible.errors import AnsibleFilterError  # type: ignore[import-untyped]

    with pytest.raises(AnsibleFilterError, match="scrape is empty"):
        metrics.monitoring_evaluate("", LOOSE, [])
