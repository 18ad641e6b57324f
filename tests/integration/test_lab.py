"""The lab on real hosts: SSH + Ansible changes, reboots, reset, snapshots, the apt repository."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from opsrunner.lab.core import Lab
from tests.lab_helpers import run_playbook, snapshots

pytestmark = [pytest.mark.lab, pytest.mark.slow]

CHANGE_AND_READ_BACK = textwrap.dedent("""\
    - name: Change a file, a user and an nftables rule, then read them back
      hosts: all
      gather_facts: false
      tasks:
        - name: A file
          ansible.builtin.copy:
            dest: /etc/opsrunner-lab-test
            content: "hello {{ inventory_hostname }}\\n"
            mode: "0644"
        - name: A user
          ansible.builtin.user:
            name: labtest
            shell: /bin/bash
        - name: An nftables rule
          ansible.builtin.shell: |
            nft list table inet labtest >/dev/null 2>&1 || nft -f - <<'EOF'
            table inet labtest {
              chain input { type filter hook input priority 0; policy accept; tcp dport 4711 drop; }
            }
            EOF
          changed_when: true
        - name: Read back
          ansible.builtin.shell: |
            cat /etc/opsrunner-lab-test; getent passwd labtest | cut -d: -f1
            nft list chain inet labtest input
          register: readback
          changed_when: false
        - name: Report what was read
          ansible.builtin.copy:
            dest: "{{ lookup('env', 'READBACK_DIR') }}/{{ inventory_hostname }}.txt"
            content: "{{ readback.stdout }}"
            mode: "0644"
          delegate_to: localhost
""")


def test_playbook_changes_file_user_and_nft_rule_on_every_host(lab: Lab, tmp_path: Path) -> None:
    play = tmp_path / "change.yml"
    play.write_text(CHANGE_AND_READ_BACK)
    res = run_playbook(lab, play, check=False, env={"READBACK_DIR": str(tmp_path)})
    assert res.rc == 0, str(res)
    assert sorted(res["stats"]) == ["host1", "host2", "host3"]
    for host in ("host1", "host2", "host3"):
        text = (tmp_path / f"{host}.txt").read_text()
        assert f"hello {host}" in text
        assert "labtest" in text.splitlines()
        assert "tcp dport 4711 drop" in text
        # and independently over the lab's own SSH
        assert lab.ssh(host, "id -u labtest").returncode == 0
    # the hosts are isolated: host2 did not get host1's file content
    assert lab.ssh("host2", "cat /etc/opsrunner-lab-test").stdout.strip() == "hello host2"
    for host in ("host1", "host2", "host3"):
        lab.reset(host, wait=False)
    for host in ("host1", "host2", "host3"):
        lab.wait_ready(host)
        assert lab.ssh(host, "id -u labtest").returncode != 0, (
            "reset must bring back the pristine image"
        )
        assert lab.ssh(host, "nft list table inet labtest").returncode != 0


def test_snapshot_sees_persistent_changes_only(lab: Lab) -> None:
    before = snapshots(lab, ["host3"])["host3"]
    lab.ssh(
        "host3", "logger lab-snapshot-test; echo x > /tmp/volatile; journalctl --flush", check=True
    )
    assert lab.snapshot("host3") == before, "volatile paths must not count"
    lab.ssh("host3", "echo changed > /etc/motd", check=True)
    after = lab.snapshot("host3")
    assert after != before
    assert "etc/motd" in before.diff(after)
    lab.ssh("host3", "rm /etc/issue.net", check=True)
    assert lab.snapshot("host3").entries["etc/issue.net"] == "deleted"
    lab.reset("host3")
    assert "etc/motd" not in lab.snapshot("host3").entries


def test_reboot_is_detected_and_host_comes_back(lab: Lab) -> None:
    marker = lab.boot_marker("host2")
    boots = lab.boots("host2")
    lab.ssh("host2", "echo survives > /etc/opsrunner-reboot-test", check=True)
    lab.reboot("host2")
    assert lab.boot_marker("host2") != marker
    assert lab.boots("host2") == boots + 1, (
        "the supervisor must have started nspawn again (exit 133)"
    )
    # same overlay: changes survive the reboot; the boot_id (kernel-wide) does not tell
    assert lab.ssh("host2", "cat /etc/opsrunner-reboot-test").stdout.strip() == "survives"
    lab.reset("host2")


def test_apt_repository_serves_image_packages_demo_packages_and_files(lab: Lab) -> None:
    url = lab.repo.publish_file("feeds/test.json", json.dumps({"ok": True}))
    lab.repo.publish_package("opsdemo-lab", "2.0", "bookworm-security")
    out = lab.ssh(
        "host1", "cat /etc/apt/sources.list.d/* 2>/dev/null; cat /etc/apt/sources.list"
    ).stdout
    assert out.strip().splitlines() == lab.repo.sources_list().strip().splitlines(), (
        "only the lab repository"
    )
    assert lab.ssh("host1", "apt-get update -q", timeout=120).returncode == 0
    policy = lab.ssh("host1", "apt-cache policy opsdemo-lab opsdemo-web").stdout
    assert "Candidate: 2.0" in policy
    assert (
        "o=Debian,a=bookworm-security,n=bookworm-security,l=Debian-Security"
        in lab.ssh("host1", "apt-cache policy").stdout
    )
    # a package of the image can be reinstalled from the repository after a removal
    assert (
        lab.ssh(
            "host1", "apt-get remove -y -q restic && apt-get install -y -q restic", timeout=180
        ).returncode
        == 0
    )
    assert lab.ssh("host1", "restic version").returncode == 0
    assert (
        lab.ssh(
            "host1",
            "apt-get install -y -q opsdemo-base=1.0 && apt-get install -y -q opsdemo-base",
            timeout=180,
        ).returncode
        == 0
    )
    assert lab.ssh("host1", "cat /usr/share/opsdemo/opsdemo-base/VERSION").stdout.strip() == "1.1"
    assert json.loads(lab.ssh("host1", f"curl -fsS {url}").stdout) == {"ok": True}
    # names as DNS would give them: the repository server and the other hosts
    by_name = url.replace(lab.repo.address, "lab-repo")
    assert json.loads(lab.ssh("host1", f"curl -fsS {by_name}").stdout) == {"ok": True}
    assert lab.ssh("host1", "getent hosts host3").stdout.split()[0] == lab.hosts["host3"].address
    lab.reset("host1")
