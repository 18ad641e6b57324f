"""Fault row 13: a task printing 100 MB; opsrunner's memory stays bounded, the cut is marked.

A real ansible-runner run of a throw-away project on a local-connection host: a probe prints
100 MB, the control reports it as evidence. The CLI runs under a wrapper that reports its own
peak RSS and that of its children (ansible-playbook and its workers) beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from opsrunner.runner import evidence
from opsrunner.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.faults]

REPO = Path(__file__).resolve().parents[2]
SIZE = 100 * 1024 * 1024

CONTROLS = """\
controls:
  - id: RTX-001
    title: Huge output control
    description: Reports a 100 MB probe output.
    source: ["4.2.1"]
    owner: system_administrator
    severity: low
    frequency: daily
    kind: automated
    role: hugetest
    applies_to: [all]
"""

PLAYBOOK = f"""\
---
- name: Huge output
  hosts: all
  gather_facts: false
  tasks:
    # The command module reads a child's output in small chunks (quadratic for 100 MB), so
    # the probe writes its output to a file and slurps it: one 100 MB task result all the same.
    - name: "RTX-001 | Probe writing 100 MB"
      ansible.builtin.shell: "yes xxxxxxxx | head -c {SIZE} > {{{{ huge_file }}}}"
      changed_when: false
      check_mode: false
    - name: "RTX-001 | Read the probe's 100 MB"
      ansible.builtin.slurp:
        src: "{{{{ huge_file }}}}"
      register: __huge
    - name: "RTX-001 | Report"
      opsrunner.compliance.control:
        id: RTX-001
        passed: true
        evidence: "{{{{ __huge.content | b64decode }}}}"
"""

WRAPPER = """
import json, resource, sys
from opsrunner.cli import main
sys.argv = ["opsrunner", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print("RSS " + json.dumps({"opsrunner_kib": own, "ansible_kib": kids, "code": code}))
"""


@pytest.mark.extended
@pytest.mark.faults(13)
def test_100_mb_of_task_output(tmp_path: Path, fault_record: Callable[..., None]) -> None:
    root = tmp_path / "project"
    (root / "playbooks").mkdir(parents=True)
    shutil.copytree(REPO / "policy", root / "policy")
    (root / "policy" / "controls" / "zz_hugetest.yml").write_text(CONTROLS, encoding="utf-8")
    cfg = (REPO / "ansible.cfg").read_text(encoding="utf-8").replace("= ./", f"= {REPO}/")
    (root / "ansible.cfg").write_text(cfg, encoding="utf-8")
    (root / "playbooks" / "site.yml").write_text(PLAYBOOK, encoding="utf-8")
    inventory = root / "hosts.ini"
    inventory.write_text(
        f"h1 ansible_connection=local ansible_python_interpreter={sys.executable} "
        f"huge_file={tmp_path / 'huge.out'}\n"
    )
    state = tmp_path / "state"
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, "audit", "--plain", "--no-summary", "-i", str(inventory),
         "--state-dir", str(state), "--policy", str(root / "policy")],
        env={**os.environ, "OPSRUNNER_PROJECT": str(root), "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RSS ")]
    assert line, done
    rss = json.loads(line[-1][4:])
    own_mib, ansible_mib = rss["opsrunner_kib"] / 1024, rss["ansible_kib"] / 1024
    with Store.open(None, state) as store:
        (run,) = store.list_runs()
        (result,) = store.results(run.id or 0)
        full = json.loads(evidence.load(store, result.evidence_sha256) or b"{}")
    assert run.status == "successful", (run, done.stdout[-3000:], done.stderr[-3000:])
    assert result.status == "pass" and result.evidence_truncated, result
    assert len(result.evidence) <= evidence.TRIM
    (check,) = [c for c in full["checks"] if c.get("evidence_full_bytes")]
    expected = hashlib.sha256((b"xxxxxxxx\n" * (SIZE // 9 + 1))[:SIZE]).hexdigest()
    assert check["evidence_full_sha256"] == expected and check["evidence_full_bytes"] == SIZE
    # opsrunner never holds the output: its peak stays far below the 100 MB it did not read.
    assert own_mib < 100 + 150, f"opsrunner peaked at {own_mib:.0f} MiB"
    fault_record(
        row=13,
        injected=1,
        survived=1,
        figure=f"100 MiB task output: opsrunner peak RSS {own_mib:.0f} MiB, Ansible's "
        f"{ansible_mib:.0f} MiB; stored evidence {len(result.evidence)} chars, marked "
        f"truncated; sha256 of the full 100 MiB kept ({expected[:12]}…)",
    )
