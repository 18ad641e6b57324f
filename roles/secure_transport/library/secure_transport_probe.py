#!/usr/bin/python
"""Tell for each path whether it lies on encrypted storage (dm-crypt or encrypting fs)."""

from __future__ import annotations

# Ansible modules keep Ansible's os.path idiom, as plugins/** does (pyproject ignores PTH there).
import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: storage_encryption
short_description: Report whether paths lie on encrypted storage
description:
  - For each path, finds the mount that holds it (C(/proc/self/mountinfo)), then follows the
    mount's block device through C(/sys/dev/block) and its slaves looking for a dm-crypt mapping
    (device-mapper uuid C(CRYPT-...)); encrypting filesystems (ecryptfs, gocryptfs, encfs, cryfs)
    count as encrypted too.
  - C(encrypted) is true, false, or null when the storage cannot show it (no block device behind
    the mount, e.g. overlay or tmpfs in a container); C(reason) says why.
  - Read-only, also in check mode.
options:
  paths:
    description: Paths to examine.
    type: list
    elements: str
    required: true
"""

RETURN = r"""
paths:
  description: One entry per path (path
  exists: null
  mount: null
  fstype: null
  source: null
  device: null
  encrypted: null
  reason).: null
  type: list
  returned: always
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


def main() -> None:
    module = AnsibleModule(
        argument_spec={"paths": {"type": "list", "elements": "str", "required": True}},
        supports_check_mode=True,
    )
    mounts = _mounts()
    module.exit_json(changed=False, paths=[examine(p, mounts) for p in module.params["paths"]])


if __name__ == "__main__":
    main()
