#!/usr/bin/python
"""Read-only log review probe: journal findings, failed units, journald's settings and files."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import stat
import subprocess
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: log_review_probe
short_description: Everything the log_review controls check, in one read-only call
description:
  - Reads the systemd journal of the last I(since_hours) hours and returns failed
    SSH logins by source address, sudo use and sudo failures by user, OOM kills
    and disk errors, the failed systemd units, and journald's effective
    Storage/MaxRetentionSec/SystemMaxUse after all drop-ins.
  - Never changes the host; it supports check mode and reports C(changed=false).
  - Each section carries its own C(error) so one broken probe does not hide the others.
  - Given C(files), it also compares files and directories with what the role
    would write (content rendered on the controller, owner, group, mode), so the
    audit of LOG-001 needs no file or template task on the host.
  - Counts at or above a threshold become findings with the severity given for
    their kind; everything below is still returned as observed counts.
options:
  since_hours:
    description: Length of the review period, in hours back from now.
    type: int
    default: 24
  thresholds:
    description: >-
      Finding thresholds by kind - ssh_failed (per source address), sudo_failed
      (per user), oom and disk (messages in the period), failed_unit (units).
    type: dict
    default: {}
  severities:
    description: Severity (low, medium, high, critical) of a finding by kind.
    type: dict
    default: {}
  restart_allowlist:
    description: Units that are safe to restart; failed units on it are flagged restartable.
    type: list
    elements: str
    default: []
  sections:
    description: The sections to scan (all by default); the others are returned empty.
    type: list
    elements: str
    choices: [ssh, sudo, kernel, units, journald]
    default: [ssh, sudo, kernel, units, journald]
  files:
    description: >-
      Paths to compare, each C(path), C(state) (file or directory), C(owner),
      C(group), C(mode) (octal string) and, for a file, C(content).
    type: list
    elements: dict
    default: []
author: [opsrunner]
"""

EXAMPLES = r"""
- name: "LOG-002 | Scan the journal of the review period"
  log_review_probe:
    since_hours: 24
    thresholds: {ssh_failed: 10, sudo_failed: 3, oom: 1, disk: 1, failed_unit: 1}
    severities: {ssh_failed: high, sudo_failed: medium, oom: high, disk: high, failed_unit: medium}
    restart_allowlist: [cron.service]
  register: __log_review_scan
"""

RETURN = r"""
ssh:
  description: "failed_by_source {addr: count}, findings, summary, error"
  returned: always
  type: dict
sudo:
  description: "commands_by_user, failures_by_user, failure_samples, findings, summary, error"
  returned: always
  type: dict
kernel:
  description: "oom and disk (message lists), findings, summary, error"
  returned: always
  type: dict
units:
  description: "failed and restartable (unit lists), findings, summary, error"
  returned: always
  type: dict
journald:
  description: "effective {key: value}, sources (files read), persistent_dir, error"
  returned: always
  type: dict
files:
  description: "per path: exists, ok, problems (what differs), mode, owner, group"
  returned: always
  type: dict
"""

# sshd: one event per failed authentication ("Failed <method> for ..."); an
# "Invalid user" connection counts once when it has no "Failed" line (key-only
# attempts by unknown users), so a password guess is never counted twice.
_SSH_FAILED = re.compile(r"^Failed \S+ for (?:invalid user )?\S* ?from (\S+) port (\d+)")
_SSH_INVALID = re.compile(r"^Invalid user \S* ?from (\S+) port (\d+)")
_SUDO_COMMAND = re.compile(r"^\s*(\S+) : .*COMMAND=")
_SUDO_FAILURE = re.compile(
    r"^\s*(\S+) : (?:\d+ incorrect password attempts?|user NOT in sudoers|"
    r"a password is required|command not allowed|user NOT authorized on host)"
)
_OOM = re.compile(
    r"Out of memory: Killed process|invoked oom-killer|killed by the OOM killer|oom-kill:"
)
_DISK = re.compile(
    r"I/O error|EXT4-fs error|XFS \(\S+\): .*error|Buffer I/O error|critical medium error|"
    r"No space left on device|Remounting filesystem read-only|BTRFS error"
)
# Only the kernel and the service manager that watches it may report OOM
# kills and disk errors; other programs (e.g. Ansible logging its own module
# arguments) must not match. Repeated fields are OR-ed by journalctl, "+" ORs groups.
_KERNEL_MATCHES = (
    "_TRANSPORT=kernel",
    "+",
    "SYSLOG_IDENTIFIER=kernel",
    "SYSLOG_IDENTIFIER=systemd",
    "SYSLOG_IDENTIFIER=systemd-oomd",
    "SYSLOG_IDENTIFIER=smartd",
)
_JOURNALD_KEYS = ("Storage", "MaxRetentionSec", "SystemMaxUse")
_DEFAULT_THRESHOLDS = {"ssh_failed": 10, "sudo_failed": 3, "oom": 1, "disk": 1, "failed_unit": 1}
_DEFAULT_SEVERITIES = {
    "ssh_failed": "high",
    "sudo_failed": "medium",
    "oom": "high",
    "disk": "high",
    "failed_unit": "medium",
}
_SEVERITIES = ("low", "medium", "high", "critical")
_SECTIONS = ("ssh", "sudo", "kernel", "units", "journald")


class _Rules:
    """Thresholds and severities per finding kind."""

    def __init__(self, thresholds: dict[str, int], severities: dict[str, str]) -> None:
        self.thresholds = dict(_DEFAULT_THRESHOLDS, **thresholds)
        self.severities = dict(_DEFAULT_SEVERITIES, **severities)

    def finding(self, kind: str, subject: str, count: int, what: str) -> dict[str, object] | None:
        threshold = self.thresholds[kind]
        if count < threshold:
            return None
        severity = self.severities[kind]
        return {
            "kind": kind,
            "subject": subject,
            "count": count,
            "threshold": threshold,
            "severity": severity,
            "text": f"{what} {subject}: {count} (threshold {threshold}, {severity})",
        }


def _summary(findings: list[dict[str, object]], clean: str) -> str:
    return "; ".join(str(f["text"]) for f in findings) if findings else clean


def _journal(since_hours: int, *matches: str) -> list[dict[str, str]]:
    cmd = ["journalctl", "--no-pager", "-q", "-o", "json", f"--since=-{since_hours}h", *matches]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: rc={proc.returncode} {proc.stderr.strip()}")
    entries = []
    for line in proc.stdout.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("MESSAGE")
        # journald stores non-UTF-8 messages as byte arrays.
        if isinstance(message, list):
            message = bytes(message).decode("utf-8", "replace")
        entry["MESSAGE"] = message or ""
        entries.append(entry)
    return entries


def _ssh(since_hours: int, rules: _Rules) -> dict[str, object]:
    failed: dict[tuple[str, str], int] = {}
    invalid: set[tuple[str, str]] = set()
    for entry in _journal(since_hours, "SYSLOG_IDENTIFIER=sshd"):
        match = _SSH_FAILED.match(entry["MESSAGE"])
        if match:
            connection = (match.group(1), match.group(2))
            failed[connection] = failed.get(connection, 0) + 1
            continue
        match = _SSH_INVALID.match(entry["MESSAGE"])
        if match:
            invalid.add((match.group(1), match.group(2)))
    by_source: dict[str, int] = {}
    for (source, _port), count in failed.items():
        by_source[source] = by_source.get(source, 0) + count
    for source, _port in invalid - set(failed):
        by_source[source] = by_source.get(source, 0) + 1
    findings = [
        f
        for source, count in sorted(by_source.items())
        if (f := rules.finding("ssh_failed", source, count, "failed SSH logins from"))
    ]
    total = sum(by_source.values())
    return {
        "failed_by_source": by_source,
        "findings": findings,
        "summary": _summary(
            findings,
            f"{total} failed SSH login(s) from {len(by_source)} source(s), none at the threshold",
        ),
    }


def _sudo(since_hours: int, rules: _Rules) -> dict[str, object]:
    commands: dict[str, int] = {}
    failures: dict[str, int] = {}
    samples: list[str] = []
    for entry in _journal(since_hours, "SYSLOG_IDENTIFIER=sudo"):
        message = entry["MESSAGE"]
        failure = _SUDO_FAILURE.match(message)
        if failure:
            failures[failure.group(1)] = failures.get(failure.group(1), 0) + 1
            if len(samples) < 10:
                samples.append(message.strip())
            continue
        command = _SUDO_COMMAND.match(message)
        if command:
            commands[command.group(1)] = commands.get(command.group(1), 0) + 1
    findings = [
        f
        for user, count in sorted(failures.items())
        if (f := rules.finding("sudo_failed", user, count, "failed sudo attempts by"))
    ]
    used = ", ".join(f"{user} x{count}" for user, count in sorted(commands.items())) or "nobody"
    return {
        "commands_by_user": commands,
        "failures_by_user": failures,
        "failure_samples": samples,
        "findings": findings,
        "summary": _summary(findings, f"sudo used by {used}; failures below the threshold"),
    }


def _kernel(since_hours: int, rules: _Rules) -> dict[str, object]:
    oom: list[str] = []
    disk: list[str] = []
    for entry in _journal(since_hours, *_KERNEL_MATCHES):
        message = entry["MESSAGE"]
        if _OOM.search(message):
            oom.append(message.strip()[:300])
        elif _DISK.search(message):
            disk.append(message.strip()[:300])
    findings = [
        f
        for f in (
            rules.finding("oom", "messages", len(oom), "OOM kill"),
            rules.finding("disk", "messages", len(disk), "disk error"),
        )
        if f
    ]
    for finding in findings:
        finding["samples"] = (oom if finding["kind"] == "oom" else disk)[:5]
        finding["text"] = f"{finding['text']}: {finding['samples'][0]}"
    return {
        "oom": oom,
        "disk": disk,
        "findings": findings,
        "summary": _summary(findings, "no OOM kill or disk error at the threshold"),
    }


def _unit_name(name: str) -> str:
    return name if "." in name else f"{name}.service"


def _units(rules: _Rules, allowlist: list[str]) -> dict[str, object]:
    cmd = ["systemctl", "list-units", "--failed", "--all", "--no-legend", "--plain", "--no-pager"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: rc={proc.returncode} {proc.stderr.strip()}")
    failed = sorted(line.split()[0] for line in proc.stdout.splitlines() if line.strip())
    allowed = {_unit_name(name) for name in allowlist}
    restartable = [unit for unit in failed if unit in allowed]
    findings = []
    finding = rules.finding("failed_unit", ", ".join(failed), len(failed), "failed units")
    if finding:
        finding["restartable"] = restartable
        findings.append(finding)
    return {
        "failed": failed,
        "restartable": restartable,
        "findings": findings,
        "summary": _summary(findings, f"{len(failed)} failed unit(s), below the threshold"),
    }


def _journald() -> dict[str, object]:
    # systemd's order: journald.conf, then every drop-in by file name across
    # /usr/lib, /run and /etc (a name in /etc masks the same name elsewhere).
    dropins: dict[str, Path] = {}
    for base in ("/usr/lib", "/usr/local/lib", "/run", "/etc"):
        for path in Path(base, "systemd/journald.conf.d").glob("*.conf"):
            dropins[path.name] = path
    files = [Path("/etc/systemd/journald.conf")] + [dropins[name] for name in sorted(dropins)]
    effective: dict[str, str] = {}
    sources: list[str] = []
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            continue
        sources.append(str(path))
        section = ""
        for raw in lines:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            if section == "Journal" and "=" in line:
                key, value = (part.strip() for part in line.split("=", 1))
                if key in _JOURNALD_KEYS:
                    effective[key] = value
    return {
        "effective": effective,
        "sources": sources,
        "persistent_dir": Path("/var/log/journal").is_dir(),
    }


def _path_state(want: dict[str, object]) -> dict[str, object]:
    """Compare one path with the owner, group, mode and content the role would give it."""
    path = str(want["path"])
    state = str(want.get("state", "file"))
    out: dict[str, object] = {
        "exists": False,
        "ok": False,
        "problems": [],
        "mode": "",
        "owner": "",
        "group": "",
    }
    problems: list[str] = []
    try:
        st = os.stat(path)
    except FileNotFoundError:
        out["problems"] = [f"{path} missing"]
        return out
    out["exists"] = True
    is_dir = stat.S_ISDIR(st.st_mode)
    if is_dir != (state == "directory"):
        problems.append(f"{path} is not a {state}")
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    mode = f"{stat.S_IMODE(st.st_mode):04o}"
    out.update(mode=mode, owner=owner, group=group)
    if "owner" in want and owner != want["owner"]:
        problems.append(f"{path} owner {owner}, want {want['owner']}")
    if "group" in want and group != want["group"]:
        problems.append(f"{path} group {group}, want {want['group']}")
    if "mode" in want and stat.S_IMODE(st.st_mode) != int(str(want["mode"]), 8):
        problems.append(f"{path} mode {mode}, want {want['mode']}")
    if "content" in want and not is_dir:
        with open(path, "rb") as fh:
            if fh.read() != str(want["content"]).encode():
                problems.append(f"{path} content differs from the policy")
    out["problems"] = problems
    out["ok"] = not problems
    return out


def _section(probe, *args):  # type: ignore[no-untyped-def]
    try:
        result = probe(*args)
        result["error"] = ""
        return result
    except (OSError, RuntimeError) as exc:
        return {"error": str(exc), "findings": [], "summary": f"probe failed: {exc}"}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "since_hours": {"type": "int", "default": 24},
            "thresholds": {"type": "dict", "default": {}},
            "severities": {"type": "dict", "default": {}},
            "restart_allowlist": {"type": "list", "elements": "str", "default": []},
            "sections": {
                "type": "list",
                "elements": "str",
                "choices": list(_SECTIONS),
                "default": list(_SECTIONS),
            },
            "files": {"type": "list", "elements": "dict", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    hours = params["since_hours"]
    if hours < 1:
        module.fail_json(msg=f"since_hours must be at least 1, got {hours}")
    unknown = sorted(set(params["thresholds"]) - set(_DEFAULT_THRESHOLDS))
    unknown += sorted(set(params["severities"]) - set(_DEFAULT_SEVERITIES))
    if unknown:
        module.fail_json(
            msg=f"unknown finding kind(s): {', '.join(unknown)}; "
            f"known: {', '.join(_DEFAULT_THRESHOLDS)}"
        )
    thresholds: dict[str, int] = {}
    for kind, value in params["thresholds"].items():
        try:
            thresholds[kind] = int(value)
        except (TypeError, ValueError):
            module.fail_json(msg=f"thresholds.{kind} must be an integer, got {value!r}")
        if thresholds[kind] < 1:
            module.fail_json(msg=f"thresholds.{kind} must be at least 1, got {value!r}")
    for kind, value in params["severities"].items():
        if value not in _SEVERITIES:
            module.fail_json(
                msg=f"severities.{kind} must be one of {', '.join(_SEVERITIES)}, got {value!r}"
            )
    rules = _Rules(thresholds, params["severities"])
    probes = {
        "ssh": (_ssh, hours, rules),
        "sudo": (_sudo, hours, rules),
        "kernel": (_kernel, hours, rules),
        "units": (_units, rules, params["restart_allowlist"]),
        "journald": (_journald,),
    }
    results = {
        name: _section(*probes[name]) if name in params["sections"] else {} for name in _SECTIONS
    }
    files: dict[str, object] = {}
    for want in params["files"]:
        try:
            files[str(want["path"])] = _path_state(want)
        except (OSError, KeyError, ValueError) as exc:
            files[str(want.get("path", "?"))] = {
                "exists": False,
                "ok": False,
                "problems": [f"cannot read: {exc}"],
            }
    module.exit_json(changed=False, since_hours=hours, files=files, **results)


if __name__ == "__main__":
    main()
