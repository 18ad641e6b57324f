#!/usr/bin/python3
"""Read-only probe of the patching role: pending updates, age, holds, reboot, records, health."""

from __future__ import annotations

import datetime as _dt
import email.utils
import fnmatch
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: patching_probe
short_description: Pending updates, holds, reboot need, patch records and health, read-only
description:
  - Reads apt's view of the host with python3-apt. With I(refresh), fresh
    package lists are fetched into a private temporary directory that is removed
    afterwards, so an audit sees what the repositories publish now while the
    host's own apt state stays untouched.
  - An update is a security update when its candidate version comes from an
    origin whose suite matches I(security_suite_regex) or whose label is
    C(Debian-Security).
  - The age of an update is the time since the C(Date) of the Release file of
    the suite that publishes the candidate (a lower bound of its real age).
  - With I(health_services) or I(health_checks) it also runs the rollout's health
    check (C(systemctl is-active) and the group's read-only check commands), so an
    audit gathers every fact of the role's controls in one round trip. Safe in check mode.
options:
  refresh:
    {description: Fetch fresh lists into a private directory first., type: bool, default: true}
  security_suite_regex:
    {description: Suites that carry security updates., type: str, default: '-security$'}
  reboot_packages:
    {description: Package name globs whose upgrade needs a reboot., type: list, elements: str}
  state_dir:
    description: Where the role keeps its records.
    type: path
    default: /var/lib/opsrunner/patching
  health_services:
    description: Services that must be active (systemctl is-active).
    type: list
    elements: str
    default: []
  health_checks:
    description: The group's health checks, each {name, command}; a command is run without a shell.
    type: list
    elements: dict
    default: []
author: [opsrunner]
"""

RETURN = r"""
pending: {description: Pending updates (name, versions, security, suite, age_days)., type: list}
held: {description: Packages on hold., type: list}
reboot_required: {description: Whether /run/reboot-required exists., type: bool}
boot_marker: {description: boot_id and PID 1's start time (changes on every boot)., type: str}
last_success: {description: The last successful patch run on record, or null., type: dict}
health:
  description: "services: the is-active answer per service line; checks: name, rc, stdout each."
  type: dict
"""

UTC = _dt.UTC


def _release_dates(lists_dir: Path) -> dict[str, _dt.datetime]:
    """Map each Release file's path prefix to the Date it carries."""
    dates: dict[str, _dt.datetime] = {}
    for path in lists_dir.glob("*Release"):
        prefix = re.sub(r"(In)?Release$", "", str(path))
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if line.startswith("Date:"):
                        parsed = email.utils.parsedate_to_datetime(line.split(":", 1)[1].strip())
                        dates[prefix] = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
                        break
        except (OSError, TypeError, ValueError):
            continue
    return dates


def _published(filename: str, dates: dict[str, _dt.datetime]) -> _dt.datetime | None:
    best = ""
    for prefix in dates:
        if filename.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return dates.get(best) if best else None


def _boot_marker() -> str:
    """boot_id changes on a VM reboot; PID 1's start time changes on a container reboot too."""
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    # Field 22 (starttime) follows the parenthesised command name, which may hold spaces.
    stat = Path("/proc/1/stat").read_text(encoding="ascii")
    return f"{boot_id}/{stat.rsplit(')', 1)[1].split()[19]}"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _refresh(private: Path) -> str:
    """apt-get update into a private lists directory; returns the error text, empty on success."""
    (private / "partial").mkdir()
    command = [
        "apt-get", "update", "-qq",
        f"-o=Dir::State::Lists={private}",
        "-o=Dir::Cache::pkgcache=", "-o=Dir::Cache::srcpkgcache=",
        "-o=APT::Sandbox::User=root", "-o=Acquire::Retries=1", "-o=Acquire::http::Timeout=15",
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    if proc.returncode != 0 or "Err:" in proc.stdout or proc.stderr.strip().startswith("E:"):
        text = (proc.stderr or proc.stdout).strip()[-1000:]
        return text or f"apt-get update exited {proc.returncode}"
    return ""


def _pending(
    lists_dir: Path, security_re: re.Pattern[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every upgradable installed package with its class and age, and the held packages."""
    import apt
    import apt_pkg

    apt_pkg.init_config()
    apt_pkg.config.set("Dir::State::Lists", str(lists_dir))
    apt_pkg.config.set("Dir::Cache::pkgcache", "")
    apt_pkg.config.set("Dir::Cache::srcpkgcache", "")
    apt_pkg.init_system()
    cache = apt.Cache(memonly=True)
    dates = _release_dates(lists_dir)
    now = _dt.datetime.now(UTC)
    pending: list[dict[str, Any]] = []
    held: list[str] = []
    for pkg in cache:
        if not pkg.is_installed:
            continue
        is_held = pkg._pkg.selected_state == apt_pkg.SELSTATE_HOLD
        if is_held:
            held.append(pkg.name)
        candidate = pkg.candidate
        if candidate is None or not pkg.is_upgradable:
            continue
        security, suite, published = False, "", None
        for pkgfile, _index in candidate._cand.file_list:
            if pkgfile.not_source:  # dpkg's status file
                continue
            is_sec = bool(security_re.search(pkgfile.archive or "")) or (
                pkgfile.label == "Debian-Security"
            )
            when = _published(pkgfile.filename or "", dates)
            # A security origin decides both the class and the clock when it carries the version.
            if is_sec and not security:
                security, suite, published = True, pkgfile.archive, when
            elif not suite:
                suite, published = pkgfile.archive, when
        age = round((now - published).total_seconds() / 86400, 3) if published else None
        pending.append({
            "name": pkg.name,
            "installed": pkg.installed.version,
            "candidate": candidate.version,
            "security": security,
            "suite": suite,
            "held": is_held,
            "published": published.isoformat(timespec="seconds") if published else None,
            "age_days": age,
        })  # fmt: skip
    pending.sort(key=lambda item: item["name"])
    return pending, sorted(held)


def _health(module: AnsibleModule) -> dict[str, Any]:
    """The rollout's health check, read-only: is-active per service, each check's rc and output."""
    services = module.params["health_services"]
    lines: list[str] = []
    if services:
        _rc, out, _err = module.run_command(["systemctl", "is-active", "--", *services])
        lines = out.splitlines()
    checks = []
    for check in module.params["health_checks"]:
        try:
            rc, out, err = module.run_command(
                str(check.get("command", "")), handle_exceptions=False
            )
        except (OSError, ValueError) as exc:  # a missing command fails that check only
            rc, out, err = 2, "", str(exc)
        checks.append({"name": str(check.get("name", "")), "rc": rc, "stdout": out, "stderr": err})
    return {"services": lines, "checks": checks}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "refresh": {"type": "bool", "default": True},
            "security_suite_regex": {"type": "str", "default": "-security$"},
            "reboot_packages": {"type": "list", "elements": "str", "default": []},
            "state_dir": {"type": "path", "default": "/var/lib/opsrunner/patching"},
            "health_services": {"type": "list", "elements": "str", "default": []},
            "health_checks": {"type": "list", "elements": "dict", "default": []},
        },
        supports_check_mode=True,
    )
    try:
        import apt  # noqa: F401 - only to fail early with a clear message
    except ImportError:
        module.fail_json(msg="python3-apt is not installed on the host")

    lists_dir = Path("/var/lib/apt/lists")
    private = None
    refresh_error = ""
    try:
        if module.params["refresh"]:
            private = Path(tempfile.mkdtemp(prefix="opsrunner-patching-lists-"))
            refresh_error = _refresh(private)
            lists_dir = private
        pending, held = _pending(lists_dir, re.compile(module.params["security_suite_regex"]))
    except Exception as exc:  # any apt failure is the probe breaking, reported so
        module.fail_json(msg=f"reading apt state failed: {exc}")
    finally:
        if private:
            shutil.rmtree(private, ignore_errors=True)

    pkgs_file = Path("/run/reboot-required.pkgs")
    reboot_pkgs: list[str] = []
    if pkgs_file.exists():
        text = pkgs_file.read_text(encoding="utf-8", errors="replace")
        reboot_pkgs = sorted({line.strip() for line in text.splitlines() if line.strip()})
    globs = module.params["reboot_packages"]
    state_dir = Path(module.params["state_dir"])
    module.exit_json(
        changed=False,
        health=_health(module),
        pending=pending,
        security=[p for p in pending if p["security"]],
        other=[p for p in pending if not p["security"]],
        held=held,
        reboot_required=Path("/run/reboot-required").exists(),
        reboot_required_pkgs=reboot_pkgs,
        needs_reboot_after=sorted(
            p["name"] for p in pending if any(fnmatch.fnmatch(p["name"], g) for g in globs)
        ),
        boot_marker=_boot_marker(),
        last_success=_read_json(state_dir / "last-success.json"),
        last_patch=_read_json(state_dir / "last-patch.json"),
        refreshed=bool(private) and not refresh_error,
        refresh_error=refresh_error,
        lists_dir="private" if private else str(lists_dir),
        now=_dt.datetime.now(UTC).isoformat(timespec="seconds"),
    )


if __name__ == "__main__":
    main()
