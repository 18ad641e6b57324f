#!/usr/bin/python
"""Read-only probe of sshd's effective settings, the connection's groups and storage encryption."""

from __future__ import annotations

# Ansible modules keep Ansible's os.path idiom, as plugins/** does (pyproject ignores PTH there).
import grp
import os
import pwd
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: secure_transport_probe
short_description: Read every fact the secure_transport controls judge on the host in one round trip
description:
  - Runs C(sshd -T) (the effective sshd configuration SSH-001..SSH-005 compare with
    the policy) and reads the groups of the management connection's user (the SSH
    lock-out guard of SSH-005).
  - For each sensitive path (ENC-001), finds the mount that holds it
    (C(/proc/self/mountinfo)), then follows the mount's block device through
    C(/sys/dev/block) and its slaves looking for a dm-crypt mapping (device-mapper
    uuid C(CRYPT-...)); encrypting filesystems (ecryptfs, gocryptfs, encfs, cryfs)
    count as encrypted too. C(encrypted) is true, false, or null when the storage
    cannot show it (no block device behind the mount, e.g. overlay or tmpfs in a
    container); C(reason) says why.
  - Never changes the host; safe in check mode. A broken C(sshd -T) is reported
    (C(sshd_error)), never a module failure, so the other controls still report.
options:
  sshd_binary:
    description: Path of sshd; empty skips the sshd probe.
    type: str
    default: /usr/sbin/sshd
  paths:
    description: Sensitive paths to examine.
    type: list
    elements: str
    default: []
author: opsrunner
"""

RETURN = r"""
sshd_lines:
  description: The lines of C(sshd -T) (empty when it failed or was not asked for).
  type: list
sshd_error:
  description: Why C(sshd -T) failed ('' when it answered).
  type: str
user:
  description: The user the module ran as (the management connection's, after become).
  type: str
groups:
  description: The names of that user's groups (as C(id -Gn) prints them).
  type: list
paths:
  description: >-
    One entry per sensitive path with path, exists, mount, fstype, source, device,
    encrypted (true, false or null) and reason.
  type: list
"""

_ENCRYPTING_FS = ("ecryptfs", "fuse.gocryptfs", "fuse.encfs", "fuse.cryfs")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _mounts() -> list[dict[str, str]]:
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            mounts.append(
                {
                    "device": fields[2],
                    "mount": _unescape(fields[4]),
                    "fstype": rest[0],
                    "source": _unescape(rest[1]),
                }
            )
    return mounts


def _holder(path: str, mounts: list[dict[str, str]]) -> dict[str, str]:
    best: dict[str, str] = {}
    for entry in mounts:  # later entries shadow earlier ones on the same mount point
        mount = entry["mount"]
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best.get("mount", "")):
            best = entry
    return best


def _crypt_in_stack(device: str, seen: set[str] | None = None) -> bool | None:
    """True if the block device or anything beneath it is dm-crypt; None if not a block device."""
    seen = seen or set()
    base = f"/sys/dev/block/{device}"
    if not os.path.exists(base) or device in seen:
        return None
    seen.add(device)
    try:
        with open(f"{base}/dm/uuid", encoding="utf-8") as handle:
            if handle.read().startswith("CRYPT-"):
                return True
    except OSError:
        pass
    slaves = f"{base}/slaves"
    if os.path.isdir(slaves):
        for name in os.listdir(slaves):
            with open(f"{slaves}/{name}/dev", encoding="utf-8") as handle:
                if _crypt_in_stack(handle.read().strip(), seen):
                    return True
    return False


def examine(path: str, mounts: list[dict[str, str]]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "path": path,
        "exists": os.path.exists(path),
        "mount": "",
        "fstype": "",
        "source": "",
        "device": "",
        "encrypted": None,
        "reason": "",
    }
    if not entry["exists"]:
        entry["reason"] = f"{path} does not exist"
        return entry
    holder = _holder(os.path.realpath(path), mounts)
    entry.update({k: holder.get(k, "") for k in ("mount", "fstype", "source", "device")})
    if entry["fstype"] in _ENCRYPTING_FS:
        entry["encrypted"] = True
        entry["reason"] = f"{path} is on {entry['fstype']}, an encrypting filesystem"
        return entry
    crypt = _crypt_in_stack(entry["device"]) if entry["device"] else None
    if crypt is None:
        entry["reason"] = (
            f"{path} is on {entry['fstype']} ({entry['source']}, device {entry['device']}) "
            "with no block device behind it: encryption at rest cannot be shown here"
        )
    elif crypt:
        entry["encrypted"] = True
        entry["reason"] = f"{path} is on {entry['source']}, a dm-crypt device"
    else:
        entry["encrypted"] = False
        entry["reason"] = (
            f"{path} is on {entry['source']} ({entry['fstype']}), no dm-crypt layer beneath it"
        )
    return entry


def _groups() -> tuple[str, list[str]]:
    """The user the module runs as and its groups, primary first (as `id -Gn`)."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    names = []
    for number in [gid] + [g for g in os.getgroups() if g != gid]:
        try:
            names.append(grp.getgrgid(number).gr_name)
        except KeyError:
            names.append(str(number))
    return user, names


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sshd_binary": {"type": "str", "default": "/usr/sbin/sshd"},
            "paths": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    lines: list[str] = []
    error = ""
    sshd = module.params["sshd_binary"]
    if sshd and not os.access(sshd, os.X_OK):
        error = "sshd -T failed: %s is not an executable on this host" % sshd
    elif sshd:
        rc, out, err = module.run_command([sshd, "-T"])
        if rc == 0:
            lines = out.splitlines()
        else:
            error = "sshd -T failed: " + (err.strip() or out.strip() or "rc=%d" % rc)
    user, groups = _groups()
    paths = module.params["paths"]
    mounts = _mounts() if paths else []
    module.exit_json(
        changed=False,
        sshd_lines=lines,
        sshd_error=error,
        user=user,
        groups=groups,
        paths=[examine(p, mounts) for p in paths],
    )


if __name__ == "__main__":
    main()
