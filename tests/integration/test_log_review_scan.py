"""log_review_probe's parsing and thresholds on journal lines as sshd, sudo and the kernel log."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import pytest

from opsrunner.paths import project_root

MODULE = project_root() / "roles/log_review/library/log_review_probe.py"


@pytest.fixture(scope="module")
def scan() -> ModuleType:
    spec = importlib.util.spec_from_file_location("log_review_probe", MODULE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _feed(monkeypatch: pytest.MonkeyPatch, scan: ModuleType, messages: list[str]) -> None:
    def journal(_hours: int, *_matches: str) -> list[dict[str, Any]]:
        return [{"MESSAGE": m} for m in messages]

    monkeypatch.setattr(scan, "_journal", journal)


def test_ssh_counts_each_failed_attempt_once_per_source(monkeypatch: pytest.MonkeyPatch,
                                                         scan: ModuleType) -> None:
    _feed(monkeypatch, scan, [
        # a password guess by an unknown user: one connection, two attempts
        "Invalid user admin from 192.0.2.7 port 4000",
        "Failed password for invalid user admin from 192.0.2.7 port 4000 ssh2",
        "Failed password for invalid user admin from 192.0.2.7 port 4000 ssh2",
        # key-only attempt by an unknown user: no "Failed" line, counted once
        "Invalid user bogus from 192.0.2.7 port 4001",
        "Connection closed by invalid user bogus 192.0.2.7 port 4001 [preauth]",
        # a known user's wrong password from another source
        "Failed password for root from 198.51.100.3 port 5000 ssh2",
        "Accepted publickey for root from 10.0.0.1 port 22 ssh2: ED25519 SHA256:x",
    ])
    rules = scan._Rules({"ssh_failed": 3}, {"ssh_failed": "critical"})
    result = scan._ssh(24, rules)
    assert result["failed_by_source"] == {"192.0.2.7": 3, "198.51.100.3": 1}
    assert result["findings"] == [{
        "kind": "ssh_failed", "subject": "192.0.2.7", "count": 3, "threshold": 3,
        "severity": "critical",
        "text": "failed SSH logins from 192.0.2.7: 3 (threshold 3, critical)"}]


def test_sudo_separates_use_from_failures(monkeypatch: pytest.MonkeyPatch,
                                          scan: ModuleType) -> None:
    _feed(monkeypatch, scan, [
        "  alice : TTY=pts/0 ; PWD=/root ; USER=root ; COMMAND=/usr/bin/id",
        "  alice : TTY=pts/0 ; PWD=/root ; USER=root ; COMMAND=/usr/bin/true",
        "  nobody : user NOT in sudoers ; PWD=/ ; USER=root ; COMMAND=/usr/bin/true",
        "  bob : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/ ; USER=root ; COMMAND=/bin/sh",
        "pam_unix(sudo:auth): authentication failure; logname= uid=65534 euid=0 user=nobody",
    ])
    result = scan._sudo(24, scan._Rules({"sudo_failed": 1}, {}))
    assert result["commands_by_user"] == {"alice": 2}
    assert result["failures_by_user"] == {"bob": 1, "nobody": 1}
    assert [f["subject"] for f in result["findings"]] == ["bob", "nobody"]
    assert "sudo used by" not in result["summary"]  # findings replace the clean summary


def test_below_threshold_is_observed_not_a_finding(monkeypatch: pytest.MonkeyPatch,
                                                   scan: ModuleType) -> None:
    _feed(monkeypatch, scan, ["Failed password for root from 198.51.100.3 port 5000 ssh2"])
    result = scan._ssh(24, scan._Rules({"ssh_failed": 2}, {}))
    assert result["findings"] == []
    assert result["failed_by_source"] == {"198.51.100.3": 1}


def test_kernel_oom_and_disk_errors(monkeypatch: pytest.MonkeyPatch, scan: ModuleType) -> None:
    _feed(monkeypatch, scan, [
        "Out of memory: Killed process 4242 (reportd) total-vm:812345kB",
        "cron.service: A process of this unit has been killed by the OOM killer.",
        "blk_update_request: I/O error, dev vda, sector 2048 op 0x1:(WRITE)",
        "EXT4-fs error (device vda1): ext4_find_entry:1455: inode #2: comm ls: reading directory",
        "Started session 3 of user root.",
    ])
    result = scan._kernel(24, scan._Rules({"oom": 2, "disk": 3}, {}))
    assert len(result["oom"]) == 2 and len(result["disk"]) == 2
    assert [f["kind"] for f in result["findings"]] == ["oom"]  # disk: 2 < threshold 3
    assert result["findings"][0]["samples"][0].startswith("Out of memory: Killed process 4242")
