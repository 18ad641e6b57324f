"""account_cleanup on lab hosts: enforce from the roster, idempotence, one mutation per control."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from opsrunner.lab.core import Lab
from tests.lab_helpers import ROOT, control, controls, reset_hosts, run_playbook, snapshots

PLAYBOOK = "playbooks/account_cleanup.yml"
ACC = tuple(f"ACC-00{i}" for i in range(1, 9))
DISRUPTIVE = {"account_cleanup_disruptive": True}

ROSTER = yaml.safe_load((ROOT / "policy" / "roster.yml").read_text())
KEYS = {p["user"]: p.get("ssh_keys", []) for p in ROSTER["people"]}

# frank left the company (departed in the roster); before the first enforce his
# account still looks like an active one on host2: groups, key, crontab, a process.
FRANK_AS_BEFORE = (
    "useradd -m -s /bin/bash -G adm frank"
    " && install -d -o frank -m 700 ~frank/.ssh"
    f" && echo '{KEYS['frank'][0]}' > ~frank/.ssh/authorized_keys"
    " && echo '0 * * * * true' | crontab -u frank -"
    " && systemd-run --quiet --uid=frank --unit=frank-job sleep 600"
)

# One mutation per control, spread over the hosts (several controls per host,
# never the same control twice), then one audit.
MUTATIONS: dict[str, list[tuple[str, str]]] = {
    "host1": [
        ("ACC-001", "gpasswd -d alice adm >/dev/null"),
        ("ACC-006", f"echo '{KEYS['chen'][0]}' >> /root/.ssh/authorized_keys"),
        ("ACC-008", "sed -i 's/^deny = .*/deny = 50/' /etc/security/faillock.conf"),
    ],
    "host2": [
        ("ACC-002", f"echo '{KEYS['frank'][0]}' > ~frank/.ssh/authorized_keys"),
        ("ACC-004", "useradd -m -s /bin/bash mallory"),
    ],
    "host3": [
        ("ACC-003", "usermod -aG adm grace"),
        ("ACC-005", "passwd -d bruce >/dev/null"),
        (
            "ACC-007",
            "echo 'nobody ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/zz-extra"
            " && chmod 0440 /etc/sudoers.d/zz-extra",
        ),
    ],
}

EVIDENCE = {
    ("host1", "ACC-001"): "alice: missing groups adm",
    ("host1", "ACC-006"): "on accounts chen, root",
    ("host1", "ACC-008"): "faillock deny = 50",
    ("host2", "ACC-002"): "frank (left 2026-11-01",
    ("host2", "ACC-004"): "mallory",
    ("host3", "ACC-003"): "grace: extra groups adm (previous role)",
    ("host3", "ACC-005"): "bruce: empty password hash",
    ("host3", "ACC-007"): "/etc/sudoers.d/zz-extra:1 grants nobody",
}

# Controls a person must settle (enforce reports them, changes nothing).
REPORT_ONLY = {"ACC-004", "ACC-006"}


def _all_pass(res: dict[str, object], host: str) -> None:
    assert controls(res, host) == dict.fromkeys(ACC, "pass"), res


@pytest.mark.lab
@pytest.mark.slow
def test_account_cleanup_enforce_idempotent_and_mutations(lab: Lab) -> None:
    reset_hosts(lab)
    try:
        lab.ssh("host2", FRANK_AS_BEFORE, check=True)
        first = run_playbook(lab, PLAYBOOK, check=False, extra_vars=DISRUPTIVE)
        for host in lab.hosts:
            _all_pass(first, host)
        frank = lab.ssh(
            "host2",
            "getent shadow frank | cut -d: -f2,8; id -nG frank;"
            " ls ~frank/.ssh; crontab -l -u frank 2>&1; pgrep -u frank -c;"
            " test -d /home/frank && echo home-kept",
            check=False,
        ).stdout
        assert frank.splitlines()[0].startswith("!") and frank.splitlines()[0].endswith(":1"), frank
        assert frank.splitlines()[1] == "frank", frank  # only his own primary group is left
        assert "authorized_keys" not in frank and "no crontab for frank" in frank, frank
        assert "\n0\n" in frank and "home-kept" in frank, frank

        second = run_playbook(lab, PLAYBOOK, check=False, extra_vars=DISRUPTIVE)
        for host in lab.hosts:
            assert second["stats"][host]["changed"] == 0, f"second enforce changed {host}\n{second}"
            _all_pass(second, host)

        for host, steps in MUTATIONS.items():
            for _cid, cmd in steps:
                lab.ssh(host, cmd, check=True)
        before = snapshots(lab)
        audit = run_playbook(lab, PLAYBOOK, check=True, diff=True)
        assert snapshots(lab) == before, "the audit changed a host"
        for host in lab.hosts:
            broken = {cid for cid, _ in MUTATIONS.get(host, [])}
            want = {cid: ("fail" if cid in broken else "pass") for cid in ACC}
            assert controls(audit, host) == want, audit
        for (host, cid), text in EVIDENCE.items():
            rec = control(audit, host, cid)
            assert text in rec["evidence"], rec

        fixed = run_playbook(lab, PLAYBOOK, check=False, extra_vars=DISRUPTIVE)
        for host in lab.hosts:
            broken = {cid for cid, _ in MUTATIONS.get(host, [])}
            want = {cid: ("fail" if cid in broken & REPORT_ONLY else "pass") for cid in ACC}
            assert controls(fixed, host) == want, fixed
        assert "report only" in control(fixed, "host2", "ACC-004")["reason"]
        # Report-only findings were left for a person: the account and the key are still there.
        assert lab.ssh("host2", "getent passwd mallory").returncode == 0
        root_keys = lab.ssh("host1", "cat /root/.ssh/authorized_keys").stdout
        assert KEYS["chen"][0].split()[1] in root_keys
    finally:
        reset_hosts(lab)


def _policy_with_departures(tmp_path: Path, today: dt.date) -> Path:
    """Policy copy: bruce left 5 days ago, chen leaves today, backup_target archives homes."""
    policy = tmp_path / "policy"
    shutil.copytree(ROOT / "policy", policy)
    roster = yaml.safe_load((policy / "roster.yml").read_text())
    for person in roster["people"]:
        if person["user"] == "bruce":
            person.update(status="departed", end_date=(today - dt.timedelta(days=5)).isoformat())
        if person["user"] == "chen":
            person.update(status="departed", end_date=today.isoformat())
    (policy / "roster.yml").write_text(yaml.safe_dump(roster, sort_keys=False))
    params_file = policy / "parameters" / "account_cleanup.yml"
    params = yaml.safe_load(params_file.read_text())
    params["parameters"]["account_cleanup_archive_home"]["groups"] = {"backup_target": True}
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    return policy


@pytest.mark.lab
@pytest.mark.slow
def test_account_cleanup_departure_deadline_and_disruptive_gate(lab: Lab, tmp_path: Path) -> None:
    """A person who leaves is disabled only with the disruptive switch; the deadline counts."""
    today = dt.datetime.now(dt.UTC).date()
    policy = _policy_with_departures(tmp_path, today)
    env = {"OPSRUNNER_POLICY_DIR": str(policy)}
    host = "host3"  # standard tier (deadline: 1 day after the end date), archives homes
    reset_hosts(lab, host)
    try:
        # While they still work here: accounts made from the real roster.
        run_playbook(lab, PLAYBOOK, check=False, limit=host, extra_vars=DISRUPTIVE)
        lab.ssh(host, "systemd-run --quiet --uid=bruce --unit=bruce-job sleep 600", check=True)

        audit = run_playbook(lab, PLAYBOOK, check=True, limit=host, env=env)
        rec = control(audit, host, "ACC-002")
        assert rec["status"] == "fail", rec
        assert "bruce (left" in rec["evidence"] and "1 process(es) running" in rec["evidence"], rec
        # chen left today: within the deadline, so not a failure yet, but named as due.
        assert "chen: disable due by" in rec["evidence"], rec

        gated = run_playbook(lab, PLAYBOOK, check=False, limit=host, env=env)
        rec = control(gated, host, "ACC-002")
        assert rec["status"] == "fail" and "account_cleanup_disruptive is false" in rec["reason"]
        assert lab.ssh(host, "getent shadow bruce | cut -d: -f2").stdout.strip() == "*"

        done = run_playbook(lab, PLAYBOOK, check=False, limit=host, env=env, extra_vars=DISRUPTIVE)
        assert control(done, host, "ACC-002")["status"] == "pass", done
        # Both end dates have come, so both are locked; the policy archives their homes here.
        shadow = lab.ssh(host, "getent shadow bruce chen | cut -d: -f1,2").stdout
        assert "bruce:!" in shadow and "chen:!" in shadow, shadow
        assert lab.ssh(host, "pgrep -u bruce").returncode == 1, "bruce's process survived"
        archived = lab.ssh(
            host,
            "tar -tzf /var/backups/departed-homes/bruce-home.tar.gz;"
            " test -e /home/bruce || echo home-removed",
        ).stdout
        assert "bruce/" in archived and "home-removed" in archived, archived
        roster_sudo = lab.ssh(host, "cat /etc/sudoers.d/opsrunner-roster").stdout
        assert "alice ALL" in roster_sudo and "bruce" not in roster_sudo, roster_sudo
    finally:
        reset_hosts(lab, host)


def _enforce(lab: Lab, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`opsrunner enforce` of ACC-002 on host1 (critical) and host2 (standard), as users do."""
    cli = [
        str(Path(sys.executable).parent / "opsrunner"),
        "enforce",
        "--plain",
        "--no-summary",
        "-i",
        str(lab.inventory_path),
        "--limit",
        "host1,host2",
        "--controls",
        "ACC-002",
        "--state-dir",
        str(state),
        *extra,
    ]
    return subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)


def _frank(lab: Lab, host: str) -> tuple[str, str, bool]:
    """frank's shadow password field, account expiry (days) and whether a key file is left."""
    shadow = lab.ssh(host, "getent shadow frank | cut -d: -f2,8", check=True).stdout.strip()
    password, _, expires = shadow.partition(":")
    keys = lab.ssh(host, "test -e ~frank/.ssh/authorized_keys").returncode == 0
    return password, expires, keys


@pytest.mark.lab
@pytest.mark.slow
def test_enforce_allow_disruptive_locks_a_departed_user(lab: Lab, tmp_path: Path) -> None:
    """frank (departed in the roster) still has a live account on host1 and host2.

    The policy authorises account_cleanup's disruptive steps on critical hosts (host1), so a
    plain enforce locks him there and reports host2 not remediated; `--allow-disruptive
    account_cleanup` then locks him on host2 too, and the run records it.
    """
    from opsrunner.store import Store

    hosts = ["host1", "host2"]
    reset_hosts(lab, *hosts)
    state = tmp_path / "state"
    try:
        for host in hosts:
            lab.ssh(host, FRANK_AS_BEFORE, check=True)
            # useradd leaves no password ("!"): what tells a live account is no expiry and a key.
            _password, expires, keys = _frank(lab, host)
            assert expires == "" and keys

        plain = _enforce(lab, state)
        assert plain.returncode == 0, plain.stdout + plain.stderr
        assert "Skipping callback plugin" not in plain.stdout + plain.stderr
        locked, expires, keys = _frank(lab, "host1")
        assert locked.startswith("!") and expires == "1" and not keys, (locked, expires, keys)
        _password, expires, keys = _frank(lab, "host2")
        assert expires == "" and keys, "host2 is standard: the policy does not authorise it"

        allowed = _enforce(lab, state, "--allow-disruptive", "account_cleanup")
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
        locked, expires, keys = _frank(lab, "host2")
        assert locked.startswith("!") and expires == "1" and not keys, (locked, expires, keys)

        with Store.open(None, state) as store:
            second, first = store.list_runs(limit=2)
            assert first.disruptive == () and second.disruptive == ("account_cleanup",)
            before = {r.host: r for r in store.results(first.id or 0)}
            after = {r.host: r for r in store.results(second.id or 0)}
        assert before["host1"].status == "pass"
        assert before["host2"].status == "fail"
        assert "not remediated: account_cleanup_disruptive is false" in before["host2"].reason
        assert after["host2"].status == "pass"
        shown = subprocess.run(
            [
                str(Path(sys.executable).parent / "opsrunner"),
                "runs",
                "show",
                second.ident,
                "--state-dir",
                str(state),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "disruptive: account_cleanup" in shown, shown
    finally:
        reset_hosts(lab, *hosts)
