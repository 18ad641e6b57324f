"""Fault row 12: secret canaries never land in the store, artifacts, logs, reports or output.

One audit through the CLI on the session lab, of a throw-away project: a small playbook that
uses a vault-encrypted variable, the backup repository password (read as the backup role reads
it: the root-only controller file `$OPSRUNNER_BACKUP_PASSWORD_FILE` names; the role itself
is left out, its audit costs minutes), the become password (`ansible_become_password` from
the environment; the lab connects as root, so it is given but never prompted for), `no_log`
loop items, and a command that fails echoing the secrets on stdout and stderr. Then every
byte under the state directory (store, evidence, ansible-runner's artifacts, logs), every
report format, the metrics and the CLI's own stdout/stderr are searched for each canary:
plain, JSON-escaped and base64.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.lab.core import Lab

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.faults]

REPO = Path(__file__).resolve().parents[2]
# The formats the issue names (HTML, JUnit, SARIF) and the machine-read ones (JSON, CSV); the
# others render the same stored fields (about 8 s each on the shared CI machine).
FORMATS = ("html", "junit", "sarif", "json", "csv")

CONTROLS = "controls:\n" + "".join(
    f"""\
  - id: CNY-00{n}
    title: Secret canary control {n}
    description: Reported by the secret canary playbook.
    source: ["4.2.1"]
    owner: system_administrator
    severity: low
    frequency: daily
    kind: automated
    role: secrettest
    applies_to: [all]
"""
    for n in (1, 2)
)

PLAYBOOK = """\
---
- name: Secret canaries
  hosts: all
  gather_facts: false
  vars:
    # The backup role's own way to its repository password (roles/backup/defaults).
    secrettest_backup: >-
      {{ lookup('ansible.builtin.file',
                lookup('ansible.builtin.env', 'OPSRUNNER_BACKUP_PASSWORD_FILE')) }}
  tasks:
    - name: Hand the vault variable to a command, hidden
      ansible.builtin.command: "test -n {{ secrettest_vault }}"
      no_log: true
      changed_when: false
      check_mode: false
    - name: Loop over secret items, hidden
      ansible.builtin.command: "echo {{ item }}"
      loop:
        - "{{ secrettest_nolog }}"
        - "{{ secrettest_vault }}"
      no_log: true
      changed_when: false
      check_mode: false
    - name: "CNY-001 | Report"
      opsrunner.compliance.control:
        id: CNY-001
        passed: true
        evidence: the hidden tasks ran
    - name: "CNY-002 | Probe that fails, echoing the secrets"
      ansible.builtin.shell: |
        echo "vault={{ secrettest_vault }} become={{ ansible_become_password }}"
        echo "backup={{ secrettest_backup }} item={{ secrettest_nolog }}"
        echo "vault={{ secrettest_vault }} become={{ ansible_become_password }}" >&2
        exit 3
      changed_when: false
      check_mode: false
"""


def _encrypt(secret: str, password: str) -> str:
    from ansible.parsing.vault import VaultLib, VaultSecret  # type: ignore[import-untyped]

    vault = VaultLib([("default", VaultSecret(password.encode()))])
    return str(vault.encrypt(secret.encode()).decode())


def forms(canary: str) -> dict[str, bytes]:
    """How a canary may sit in a file: plain, JSON-escaped, base64 (each of 3 alignments)."""
    out = {"plain": canary.encode()}
    escaped = json.dumps(canary)[1:-1].encode()
    if escaped != out["plain"]:
        out["json"] = escaped
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + canary.encode())
        # The characters that depend on the canary alone, whatever precedes or follows it.
        start = 4 if shift else 0
        out[f"base64/{shift}"] = encoded[start : len(encoded) - 4]
    return out


def hits(canaries: dict[str, str], where: str, data: bytes) -> list[str]:
    """'<canary> (<form>) in <where>' for each canary form found in data."""
    found = []
    for name, canary in canaries.items():
        for form, needle in forms(canary).items():
            if needle and needle in data:
                found.append(f"{name} ({form}) in {where}")
    return found


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    root = tmp_path / "project"
    playbooks = root / "playbooks"
    (playbooks / "group_vars").mkdir(parents=True)
    shutil.copytree(REPO / "policy", root / "policy")
    (root / "policy" / "controls" / "zz_secrettest.yml").write_text(CONTROLS, encoding="utf-8")
    cfg = (REPO / "ansible.cfg").read_text(encoding="utf-8").replace("= ./", f"= {REPO}/")
    (root / "ansible.cfg").write_text(cfg, encoding="utf-8")
    (playbooks / "secrettest.yml").write_text(PLAYBOOK, encoding="utf-8")
    (playbooks / "site.yml").write_text(
        "---\n- name: Import the secret canary playbook\n"
        "  ansible.builtin.import_playbook: secrettest.yml\n",
        encoding="utf-8",
    )
    tag = secrets.token_hex(6)
    canaries = {
        "vault": f"CanaryVault{tag}",
        "backup": f"CanaryBackup{tag}",
        "become": f"CanaryBecome{tag}",
        "nolog": f"CanaryNolog{tag}",
    }
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    vault_password = keys / "vault.pass"
    vault_password.write_text(secrets.token_urlsafe(16) + "\n", encoding="utf-8")
    vault_password.chmod(0o600)
    backup_password = keys / "backup.pass"
    backup_password.write_text(canaries["backup"] + "\n", encoding="utf-8")
    backup_password.chmod(0o600)
    ciphertext = _encrypt(canaries["vault"], vault_password.read_text().strip())
    (playbooks / "group_vars" / "all.yml").write_text(
        "---\n"
        "secrettest_vault: !vault |\n"
        + "".join(f"  {line}\n" for line in ciphertext.splitlines())
        + "ansible_become_password: \"{{ lookup('ansible.builtin.env', 'SECRETTEST_BECOME') }}\"\n"
        + f"secrettest_nolog: {canaries['nolog']}\n",
        encoding="utf-8",
    )
    env = {
        "OPSRUNNER_PROJECT": str(root),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(vault_password),
        "OPSRUNNER_BACKUP_PASSWORD_FILE": str(backup_password),
        "SECRETTEST_BECOME": canaries["become"],
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield {"root": root, "canaries": canaries, "env": env}


@pytest.mark.faults(12)
def test_secret_canaries_leave_no_trace(
    lab: Lab, project: dict[str, object], tmp_path: Path, fault_record: Callable[..., None]
) -> None:
    root = Path(str(project["root"]))
    canaries: dict[str, str] = project["canaries"]  # type: ignore[assignment]
    state = tmp_path / "state"
    common = ["--state-dir", str(state), "--policy", str(root / "policy")]
    started = time.monotonic()
    audit = subprocess.run(
        [sys.executable, "-m", "opsrunner", "audit", "--plain", "-i", str(lab.inventory_path),
         *common],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, timeout=900, check=False,
    )  # fmt: skip
    took = {"audit": time.monotonic() - started}
    found = hits(canaries, "audit stdout", audit.stdout)
    found += hits(canaries, "audit stderr", audit.stderr)
    # The run happened as designed: the secrets were used, the probe failed echoing them.
    cli = CliRunner()
    shown = cli.invoke(app, ["report", "--format", "json", *common])
    assert shown.exit_code == 0, (shown.output, audit.stderr.decode()[-3000:])
    report = json.loads(shown.output)
    text = json.dumps(report)
    assert '"CNY-001"' in text and '"CNY-002"' in text, text[:3000]
    assert "non-zero return code" in text, "the failing probe did not fail as designed"
    # Every report format, the metrics, the run listing: the bytes a user or CI reads.
    outputs = {}
    for fmt in FORMATS:
        done = cli.invoke(app, ["report", "--format", fmt, *common])
        assert done.exit_code == 0, (fmt, done.output)
        outputs[f"report --format {fmt}"] = done.stdout_bytes + done.stderr_bytes
    prom = tmp_path / "prom"
    prom.mkdir()
    for args in (
        ["metrics", *common],
        ["metrics", "--textfile", str(prom), *common],
        ["runs", "show", "latest", "--state-dir", str(state)],
    ):
        done = cli.invoke(app, args)
        outputs[" ".join(args[:2])] = done.stdout_bytes + done.stderr_bytes
    took["reports"] = time.monotonic() - started - took["audit"]
    for where, data in outputs.items():
        found += hits(canaries, where, data)
    # Every byte the run left on disk: store (and its WAL), evidence, artifacts, logs, metrics.
    scanned = 0
    for base in (state, prom):
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.is_symlink():
                scanned += 1
                found += hits(canaries, str(path.relative_to(tmp_path)), path.read_bytes())
    took["scan"] = time.monotonic() - started - took["audit"] - took["reports"]
    print("seconds:", {k: round(v, 1) for k, v in took.items()})
    events = list(state.glob("runs/*/artifacts/*/job_events/*.json"))
    assert events, "the run left no events to re-import"
    fault_record(
        row=12,
        injected=len(canaries),
        survived=len(canaries) - len({f.split(" ", 1)[0] for f in found}),
        secret_hits=len(found),
        figure=f"{len(canaries)} canaries (vault, backup, become, no_log item) x 4 forms, "
        f"run {audit.returncode=}: {len(found)} hits in {scanned} files, {len(outputs) + 2} "
        f"outputs ({len(FORMATS)} report formats, metrics, CLI)",
    )
    assert not found, "\n".join(found[:40])
