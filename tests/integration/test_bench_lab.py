"""bench/ keeps working on lab hosts: arm 1 at tiny sizes on the session lab.

Arm 1 is the lab arm with its own machinery (`opsrunner audit` in a bench project); arms 4-6
sample `ansible-playbook` the same way (`_ansible_sample`) and run in `python -m bench --tiny`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.lab
@pytest.mark.slow
def test_tiny_bench_on_the_lab(lab, tmp_path):
    out = tmp_path / "table.json"
    argv = [sys.executable, "-m", "bench", "--tiny", "--arms", "1"]
    argv += ["--inventory", str(lab.inventory_path), "--json", str(out)]
    done = subprocess.run(
        argv,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["measure"]: r for r in json.loads(out.read_text())["rows"]}
    overhead = rows["CPU opsrunner/ansible, controller tasks (1 hosts)"]
    assert overhead["values"]["a"] > 0 and overhead["values"]["b"] > 0
    assert rows["CPU opsrunner/ansible, module tasks (1 hosts)"]["values"]["pairs"] == 1
