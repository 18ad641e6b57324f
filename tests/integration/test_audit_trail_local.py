"""audit_trail on this VM's own kernel (no audit in lab containers), confined to a scratch dir."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsrunner.paths import project_root

ROOT = project_root()
pytestmark = [pytest.mark.slow]


def _sh(*cmd: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check,
                          stdin=subprocess.DEVNULL)


def _audit_pid() -> int:
    out = _sh("auditctl", "-s").stdout
    match = re.search(r"^pid (\d+)", out, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _wait(predicate: Any, what: str, tries: int = 100) -> None:
    # Polls until the condition holds; not a timing assertion, only a bound on waiting.
    for _ in range(tries):
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


class Scratch:
    """The scratch directory, its keys and the playbook runs on localhost."""

    def __init__(self, base: Path, token: str) -> None:
        self.base = base
        self.data = base / "data"
        self.unheld = base / "absent" / "data"
        self.rules_file = base / "rules.d" / "50-opsrunner.rules"
        self.key = f"opsrunner-test-{token}"
        self.identity_key = f"opsrunner-test-id-{token}"
        self.auditd_pid = 0  # set when this test started auditd (and so may stop it)
        self.inventory = base / "inventory.ini"
        self.inventory.write_text(
            "localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n"
        )

    @property
    def extra_vars(self) -> dict[str, Any]:
        # Confined: no identity file of the VM is watched, the only watch is the scratch
        # data directory, the rules file lives in the scratch dir, auditd.conf is left
        # alone (AUD-004 is proven on the lab hosts) and auditd is started by this test.
        return {
            "audit_trail_identity_files": [],
            "audit_trail_identity_key": self.identity_key,
            "audit_trail_sensitive_paths": [
                {"path": str(self.data), "owner": "root", "group": "nogroup", "mode": "0770"},
                # Data this host does not hold: the kernel cannot watch a path whose
                # parent is absent, so it is listed, not loaded and not a failure.
                {"path": str(self.unheld), "owner": "root", "group": "root", "mode": "0700"},
            ],
            "audit_trail_sensitive_key": self.key,
            "audit_trail_rules_file": str(self.rules_file),
            "audit_trail_manage_service": False,
            "audit_trail_control_aud_004": False,
        }

    def run(self, *, check: bool) -> dict[str, Any]:
        results = self.base / f"results-{uuid.uuid4().hex[:6]}.json"
        cmd = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", str(self.inventory),
               str(ROOT / "playbooks/audit_trail.yml"), "--extra-vars", json.dumps(self.extra_vars)]
        if check:
            cmd += ["--check", "--diff"]
        env = {**os.environ, "OPSRUNNER_RESULTS_FILE": str(results), "ANSIBLE_NOCOLOR": "1"}
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                              timeout=600)
        assert results.is_file(), f"no results file\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
        data: dict[str, Any] = json.loads(results.read_text())
        data["_stdout"] = proc.stdout
        return data

    def loaded_rules(self) -> list[str]:
        return [line for line in _sh("auditctl", "-l").stdout.splitlines()
                if self.key in line or self.identity_key in line]

    def state(self) -> dict[str, Any]:
        """What an audit must not change: loaded rules and every file under the scratch dir."""
        tree = {}
        for path in sorted(self.base.rglob("*")):
            if path.name.startswith("results-"):
                continue
            st = path.lstat()
            tree[str(path)] = (stat.filemode(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns,
                               path.read_bytes() if path.is_file() else None)
        return {"rules": self.loaded_rules(), "tree": tree}


def _controls(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    controls: dict[str, dict[str, Any]] = results["hosts"]["localhost"]["controls"]
    return controls


def _statuses(results: dict[str, Any]) -> dict[str, str]:
    return {cid: c["status"] for cid, c in _controls(results).items()}


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    """auditd started by hand (PID 1 here is not systemd), a scratch dir; both undone afterwards."""
    if os.geteuid() != 0 or not shutil.which("auditd") or not shutil.which("auditctl"):
        pytest.skip("needs root and auditd (scripts/bootstrap installs it)")
    status = _sh("auditctl", "-s")
    if status.returncode != 0:
        pytest.skip(f"kernel audit unavailable on this machine: {status.stderr.strip()}")
    started = 0
    if _audit_pid() == 0:
        _sh("auditd", check=True)  # daemonizes; the kernel then knows its PID
        _wait(lambda: _audit_pid() != 0, "auditd to register with the kernel")
        started = _audit_pid()
    base = Path(tempfile.mkdtemp(prefix="opsrunner-aud-", dir="/tmp"))
    base.chmod(0o755)  # nobody must reach the data directory below
    box = Scratch(base, uuid.uuid4().hex[:8])
    box.auditd_pid = started
    (base / "rules.d").mkdir()
    box.data.mkdir()
    shutil.chown(box.data, "root", "nogroup")
    box.data.chmod(0o777)  # wrong on purpose: AUD-003 must find it
    for name in ("record.txt", "old.txt"):
        (box.data / name).write_text("v1\n")
        shutil.chown(box.data / name, "nobody", "nogroup")
    try:
        yield box
    finally:
        for key in (box.key, box.identity_key):
            _sh("auditctl", "-D", "-k", key)
        shutil.rmtree(base, ignore_errors=True)
        if started and Path(f"/proc/{started}").exists():
            os.kill(started, signal.SIGTERM)
            _wait(lambda: not Path(f"/proc/{started}").exists(), "auditd to stop")
    assert not box.loaded_rules(), "the test's audit rules are still loaded"


def test_audit_trail_records_who_changed_and_deleted_sensitive_data(scratch: Scratch) -> None:
    # Audit of a non-compliant host: rules missing, data directory world-writable.
    before = scratch.state()
    audit = scratch.run(check=True)
    assert scratch.state() == before, "the audit changed the host"
    statuses = _statuses(audit)
    assert statuses == {"AUD-001": "pass", "AUD-002": "fail", "AUD-003": "fail"}, \
        audit["_stdout"][-3000:]
    rule = f"-w {scratch.data} -p wa -k {scratch.key}"
    assert rule in _controls(audit)["AUD-002"]["evidence"]
    wrong = f"{scratch.data} is root:nogroup 0777, want root:nogroup 0770"
    assert wrong in _controls(audit)["AUD-003"]["evidence"]

    # Enforce, then enforce again: the second run changes nothing.
    first = scratch.run(check=False)
    assert set(_statuses(first).values()) == {"pass"}, first["_stdout"][-3000:]
    assert scratch.loaded_rules() == [rule]
    assert rule in scratch.rules_file.read_text()
    assert str(scratch.unheld) not in scratch.rules_file.read_text()
    assert f"not watchable here (parent directory absent): {scratch.unheld}" in \
        _controls(first)["AUD-002"]["evidence"]
    assert f"absent (not checked): {scratch.unheld}" in _controls(first)["AUD-003"]["evidence"]
    assert stat.S_IMODE(scratch.data.stat().st_mode) == 0o770
    second = scratch.run(check=False)
    assert set(_statuses(second).values()) == {"pass"}
    assert re.search(r"localhost\s*:.*changed=0 ", second["_stdout"]), second["_stdout"][-2000:]

    # Another user changes one file and deletes another: both are recorded with who.
    _sh("runuser", "-u", "nobody", "--", "sh", "-c",
        f"echo v2 >> {scratch.data}/record.txt && rm {scratch.data}/old.txt", check=True)

    def events() -> list[str]:
        out = _sh("ausearch", "--input-logs", "-i", "-k", scratch.key).stdout
        return [e for e in out.split("----") if "uid=nobody" in e]

    def found() -> bool:
        text = "".join(events())
        return "record.txt" in text and "old.txt" in text and "nametype=DELETE" in text

    _wait(found, "auditd to write the records of nobody's change and deletion", tries=150)
    deletion = next(e for e in events() if "old.txt" in e and "nametype=DELETE" in e)
    when = r"type=SYSCALL msg=audit\(\d\d/\d\d/\d\d(?:\d\d)? [\d:.]+:\d+\)"
    assert re.search(when, deletion)
    assert " uid=nobody " in deletion and "syscall=unlinkat" in deletion and "comm=rm" in deletion
    change = next(e for e in events() if "record.txt" in e and "nametype=DELETE" not in e)
    assert " uid=nobody " in change and f"key={scratch.key}" in change

    # Mutations, one at a time: each audit fails exactly that control and changes nothing.
    _sh("auditctl", "-W", str(scratch.data), "-p", "wa", "-k", scratch.key, check=True)
    before = scratch.state()
    audit = scratch.run(check=True)
    assert scratch.state() == before
    assert _statuses(audit) == {"AUD-001": "pass", "AUD-002": "fail", "AUD-003": "pass"}
    assert f"not loaded: {rule}" in _controls(audit)["AUD-002"]["evidence"]
    scratch.run(check=False)  # restore the rule

    scratch.data.chmod(0o775)
    before = scratch.state()
    audit = scratch.run(check=True)
    assert scratch.state() == before
    assert _statuses(audit) == {"AUD-001": "pass", "AUD-002": "pass", "AUD-003": "fail"}
    assert "0775, want root:nogroup 0770" in _controls(audit)["AUD-003"]["evidence"]
    scratch.data.chmod(0o770)

    # Kernel audit without a daemon: nothing receives the records, AUD-001 fails. Only an
    # auditd this test started is stopped (by its PID).
    if not scratch.auditd_pid:
        return
    os.kill(scratch.auditd_pid, signal.SIGTERM)
    _wait(lambda: _audit_pid() == 0, "auditd to stop")
    audit = scratch.run(check=True)
    assert _statuses(audit) == {"AUD-001": "fail", "AUD-002": "pass", "AUD-003": "pass"}
    assert "no audit daemon is running" in _controls(audit)["AUD-001"]["reason"]
