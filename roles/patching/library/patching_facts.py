#!/usr/bin/python3
"""Read-only patch state of a Debian host: pending security/other updates with their age, holds, reboot, records."""

from __future__ import annotations

import datetime as _dt
import email.utils
import fnmatch
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: patching_facts
short_description: Report pending updates, holds, reboot need and patch records without changing the host
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
options:
  refresh: {description: Fetch fresh lists into a private directory first., type: bool, default: true}
  security_suite_regex: {description: Suites that carry security updates., type: str, default: '-security$'}
  reboot_packages: {description: Package name globs whose upgrade needs a reboot., type: list, elements: str, default: []}
  state_dir: {description: Where the role keeps its records on the host., type: path, default: /var/lib/opsrunner/patching}
author: [opsrunner]
"""

RETURN = r"""
pending: {description: Every pending update (name, installed, candidate, security, suite, published, age_days, held)., type: list}
held: {description: Packages on hold., type: list}
reboot_required: {description: Whether /run/reboot-required exists., type: bool}
boot_marker: {description: boot_id and the start time of PID 1 (changes on every boot, container or not)., type: str}
last_success: {description: The last successful patch run on record, or null., type: dict}
"""


def _release_dates(lists_dir: str) -> dict[str, _dt.datetime]:
    """Map each Release file's path prefix to the Date it carries."""
    dates: dict[str, _dt.datetime] = {}
    for path in glob.glob(os.path.join(lists_dir, "*Release")):
        prefix = re.sub(r"(In)?Release$", "", path)
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if line.startswith("Date:"):
                        parsed = email.utils.parsedate_to_datetime(line.split(":", 1)[1].strip())
                        dates[prefix] = parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)
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
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
        boot_id = handle.read().strip()
    with open("/proc/1/stat", encoding="ascii") as handle:
        # Field 22 (starttime) follows the parenthesised command name, which may hold spaces.
        starttime = handle.read().rsplit(")", 1)[1].split()[19]
    return f"{boot_id}/{starttime}"


def _read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "refresh": {"type": "bool", "default": True},
            "security_suite_regex": {"type": "str", "default": "-security$"},
            "reboot_packages": {"type": "list", "elements": "str", "default": []},
            "state_dir": {"type": "path", "default": "/var/lib/opsrunner/patching"},
        },
        supports_check_mode=True,
    )
    try:
        import apt
        import apt_pkg
    except ImportError:
        module.fail_json(msg="python3-apt is not installed on the host")

    security_re = re.compile(module.params["security_suite_regex"])
    lists_dir = "/var/lib/apt/lists"
    private = None
    refresh_error = ""
    if module.params["refresh"]:
        private = tempfile.mkdtemp(prefix="opsrunner-patching-lists-")
        os.makedirs(os.path.join(private, "partial"))
        command = [
            "apt-get", "update", "-qq",
            f"-o=Dir::State::Lists={private}",
            "-o=Dir::Cache::pkgcache=", "-o=Dir::Cache::srcpkgcache=",
            "-o=APT::Sandbox::User=root", "-o=Acquire::Retries=1",
            "-o=Acquire::http::Timeout=15",
        ]
        proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
        if proc.returncode != 0 or "Err:" in proc.stdout or proc.stderr.strip().startswith("E:"):
            refresh_error = (proc.stderr or proc.stdout).strip()[-1000:] or f"apt-get update exited {proc.returncode}"
        lists_dir = private
    try:
        apt_pkg.init_config()
        apt_pkg.config.set("Dir::State::Lists", lists_dir)
        apt_pkg.config.set("Dir::Cache::pkgcache", "")
        apt_pkg.config.set("Dir::Cache::srcpkgcache", "")
        apt_pkg.init_system()
        cache = apt.Cache(memonly=True)
        dates = _release_dates(lists_dir)
        now = _dt.datetime.now(_dt.timezone.utc)
        pending = []
        held = []
        for pkg in cache:
            if not pkg.is_installed:
                continue
            is_held = pkg._pkg.selected_state == apt_pkg.SELSTATE_HOLD
            if is_held:
                held.append(pkg.name)
            candidate = pkg.candidate
            if candidate is None or not pkg.is_upgradable:
                continue
            security = False
            suite = ""
            published = None
            for pkgfile, _index in candidate._cand.file_list:
                if pkgfile.not_source:  # dpkg's status file
                    continue
                is_sec = bool(security_re.search(pkgfile.archive or "")) or pkgfile.label == "Debian-Security"
                when = _published(pkgfile.filename or "", dates)
                # The security origin decides both the class and the clock when it carries the version.
                if is_sec and not security:
                    security, suite, published = True, pkgfile.archive, when
                elif not suite:
                    suite, published = pkgfile.archive, when
            pending.append({
                "name": pkg.name,
                "installed": pkg.installed.version,
                "candidate": candidate.version,
                "security": security,
                "suite": suite,
                "held": is_held,
                "published": published.isoformat(timespec="seconds") if published else None,
                "age_days": round((now - published).total_seconds() / 86400, 3) if published else None,
            })
    except Exception as exc:  # noqa: BLE001 - any apt failure is the probe breaking, reported as such
        module.fail_json(msg=f"reading apt state failed: {exc}")
    finally:
        if private:
            shutil.rmtree(private, ignore_errors=True)

    reboot_required = os.path.exists("/run/reboot-required")
    reboot_pkgs: list[str] = []
    if os.path.exists("/run/reboot-required.pkgs"):
        with open("/run/reboot-required.pkgs", encoding="utf-8", errors="replace") as handle:
            reboot_pkgs = sorted({line.strip() for line in handle if line.strip()})
    state_dir = module.params["state_dir"]
    pending.sort(key=lambda item: item["name"])
    module.exit_json(
        changed=False,
        pending=pending,
        security=[p for p in pending if p["security"]],
        other=[p for p in pending if not p["security"]],
        held=sorted(held),
        reboot_required=reboot_required,
        reboot_required_pkgs=reboot_pkgs,
        reboot_package_globs=module.params["reboot_packages"],
        needs_reboot_after=sorted(
            p["name"] for p in pending
            if any(fnmatch.fnmatch(p["name"], g) for g in module.params["reboot_packages"])
        ),
        boot_marker=_boot_marker(),
        last_success=_read_json(os.path.join(state_dir, "last-success.json")),
        last_patch=_read_json(os.path.join(state_dir, "last-patch.json")),
        refreshed=bool(private) and not refresh_error,
        refresh_error=refresh_error,
        lists_dir="private" if private else lists_dir,
        now=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


if __name__ == "__main__":
    main()
