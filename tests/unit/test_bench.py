"""bench/ keeps working: its pure parts, and arms 2 and 3 run end to end at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.arms import shape, tasks_per_host
from bench.harness import interleave, measure

ROOT = Path(__file__).resolve().parents[2]


def test_measure_counts_the_children_cpu():
    burn = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'sum(range(10**7))'])"
    sample = measure([sys.executable, "-c", burn])
    assert sample.rc == 0 and sample.cpu > 0.1 and sample.wall >= sample.cpu / 2
    assert sample.rss_mb > 1


def test_interleave_alternates_the_order():
    seen: list[str] = []

    def arm(name: str):
        def run():
            seen.append(name)
            return measure([sys.executable, "-c", "pass"])

        return run

    got = interleave({"a": arm("a"), "b": arm("b")}, 3, lambda _t: None)
    assert seen == ["a", "b", "b", "a", "a", "b"]
    assert len(got["a"]) == len(got["b"]) == 3


def test_shape_finds_linear_growth_and_a_knee():
    linear, knee = shape({1: 10.0, 5: 30.0, 10: 55.0, 20: 105.0})
    assert linear.startswith("linear") and knee == "-"
    bent, knee = shape({1: 10.0, 5: 14.0, 10: 40.0, 20: 100.0})
    assert bent.startswith("not linear") and knee == "after 5 hosts"


def test_tasks_per_host_reads_the_recap():
    recap = (
        "PLAY RECAP ****\n"
        "host1 : ok=174  changed=23   unreachable=0    failed=1    skipped=115  rescued=0\n"
        "host2 : ok=159  changed=19   unreachable=0    failed=0    skipped=127  rescued=0\n"
    )
    assert tasks_per_host(recap) == (290 + 286) / 2


@pytest.mark.slow
def test_tiny_bench_without_lab(tmp_path):
    out = tmp_path / "table.json"
    argv = [sys.executable, "-m", "bench", "--tiny", "--arms", "2,3", "--no-pg"]
    argv += ["--ingest-sizes", "1000", "--json", str(out)]
    done = subprocess.run(
        argv,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = json.loads(out.read_text())
    assert table["tiny"] is True
    measures = [r["measure"] for r in table["rows"]]
    assert "SQLite events/s at 1,000 events (wall; per CPU-s)" in measures
    assert any(m.startswith("CPU seconds, 50 hosts") for m in measures)
    ingest = next(r for r in table["rows"] if r["measure"].startswith("SQLite events/s"))
    assert ingest["values"]["events_per_s"] > 0 and ingest["values"]["raw_rows_per_s"] > 0
    assert "target" in done.stdout and "events/s" in done.stdout
