"""`opsrunner demo` end to end on its own lab: the final audit leaves only real findings.

Lab artefacts the demo used to end with (the vulnerability feed on the internet, no TLS service
on the web host, no web content to back up, no patch run, no notice) must be gone; what is left
is each in the explicit list below with its reason, and the demo prints it. The departed user
it plants is locked, expired and without a key after enforce; its notice reaches the loopback
receivers before the window it patches in; its attestations and restore drill are recorded;
it ends with the HTML report.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from opsrunner.lab.core import Lab
from opsrunner.store import Store
from tests.lab_helpers import ROOT, network_problems

OPSRUNNER = str(ROOT / ".venv" / "bin" / "opsrunner")
HOSTS = ("host1", "host2", "host3")
#: Every non-passing (control, status) of the final audit, on which hosts, and a phrase of the
#: reason it must give. Anything else non-passing, or any of these missing, fails the test.
EXPECTED: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    **{
        (cid, "error"): (HOSTS, "kernel audit unavailable in this host")
        for cid in ("AUD-001", "AUD-002")
    },
    ("ENC-001", "error"): (("host1",), "encryption at rest cannot be shown here"),
    # The demo announces its own window; the policy's real windows' notices are overdue.
    ("PAT-006", "fail"): (HOSTS, "is overdue"),
}
#: The lab artefacts of before, each now passing where it used to break.
MUST_PASS: dict[str, tuple[str, ...]] = {
    "VUL-001": HOSTS,
    "VUL-002": HOSTS,
    "VUL-003": HOSTS,
    "TLS-001": ("host2",),
    "TLS-002": ("host2",),
    "BAK-001": ("host1", "host2"),
    "BAK-003": ("host1", "host2"),
    "BAK-007": ("host1", "host2"),
    "PAT-001": HOSTS,
    "PAT-005": HOSTS,
}


@pytest.mark.lab
@pytest.mark.slow
def test_demo_final_audit_has_no_lab_artefacts(tmp_path: Path) -> None:
    assert not network_problems(), "network not safe before the demo"
    name = f"d{os.getpid() % 10_000_000}"
    state = tmp_path / "state"
    env = {**os.environ, "OPSRUNNER_STATE_DIR": str(state)}
    env.pop("OPSRUNNER_BACKUP_PASSWORD_FILE", None)
    try:
        proc = subprocess.run(
            [OPSRUNNER, "demo", "--lab", name, "--plain", "--no-baseline"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
    finally:
        Lab(name).down(force=True)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    assert not network_problems(), "network not safe after the demo"

    with Store.open(None, state) as store:
        final = store.list_runs(mode="audit", limit=1)[0]
        assert final.id is not None and final.status == "successful", final
        results = store.results(final.id)
        runs = store.list_runs(limit=20)
    status = {(r.host, r.control_id): r for r in results}
    non_passing: dict[tuple[str, str], list[str]] = {}
    for r in results:
        if r.status not in ("pass", "notapplicable"):
            non_passing.setdefault((r.control_id, r.status), []).append(r.host)
    assert {k: tuple(sorted(v)) for k, v in non_passing.items()} == {
        k: hosts for k, (hosts, _) in EXPECTED.items()
    }, "\n".join(
        f"{r.host} {r.control_id} {r.status}: {r.reason}" for r in results if r.status != "pass"
    )
    for (cid, _), (hosts, phrase) in EXPECTED.items():
        for host in hosts:
            assert phrase in status[(host, cid)].reason, status[(host, cid)]
    for cid, hosts in MUST_PASS.items():
        for host in hosts:
            assert status[(host, cid)].status == "pass", status[(host, cid)]
    # The feed the hosts scanned is the lab's (named by its inventory); the policy's stays named.
    vul = status[("host2", "VUL-001")]
    assert "security-tracker.debian.org" in vul.evidence and "site mirror http://10.233." in (
        vul.evidence
    ), vul
    assert "CVE-2026-41001" not in status[("host2", "VUL-002")].evidence  # patched to 1.1
    # The patch run is an ordinary enforce inside the announced window, no override.
    patch = [r for r in runs if r.mode == "enforce" and r.controls and r.controls[0] == "PAT-001"]
    assert len(patch) == 1 and patch[0].job == "" and patch[0].status == "successful", runs
    # The notice went out before the window and reached both loopback receivers.
    assert "in time: yes" in out and "mail received from opsrunner@" in out, out[:6000]
    assert "webhook received at /opsrunner, signature sha256=" in out, out[:6000]
    # Three manual controls attested from the shipped evidence; the restore drill completed.
    assert out.count("+ attestation ") == 3, out[:6000]
    assert "drill 1 completed: RTO" in out, out[:8000]
    report = out.split("report: ", 1)[1].split()[0]
    assert Path(report).is_file() and Path(report).suffix == ".html", report
    manual = [line for line in out.splitlines() if line.startswith("audit (after)")]
    assert manual and "manual    0.0" not in manual[-1], manual

    # The departed user, shown after enforce on both hosts it was planted on.
    shown = [line for line in out.splitlines() if "password locked, account expired" in line]
    assert len(shown) == 2 and all("SSH key removed" in line for line in shown), out[-4000:]
    # The demo prints every remaining non-passing control with its reason and why it is left.
    tail = out[out.index("== remaining non-passing controls") :]
    for cid, _ in EXPECTED:
        assert f"   {cid} " in tail, tail
    assert "not a known lab limit" not in tail, tail
    assert "never writes a notice record by hand" in tail and "docs/lab.md" in tail, tail
