"""Read-only probe of owner, group, mode and parent directory of many paths (role audit_trail)."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

DOCUMENTATION = r"""
---
module: path_state
short_description: Read owner, group and mode of many paths in one round trip
description:
  - Reads every path with lstat (symbolic links are not followed) and says
    whether its parent directory exists, so the audit trail controls need one
    round trip per host instead of one per path. Never changes the host; safe
    in check mode.
  - When a path gives an owner, group or mode, a present path that differs is
    listed under C(wrong) in the form C(PATH is OWNER:GROUP MODE, want OWNER:GROUP MODE).
options:
  paths:
    type: list
    elements: dict
    required: true
    description:
      - Paths as dicts with C(path) and the optional wanted C(owner), C(group)
        and C(mode) (octal text such as C("0640")).
author: opsrunner
"""

RETURN = r"""
state:
  description: "Per path: exists, parent_exists and (when present) owner, group and mode."
  type: dict
present: {description: The paths that exist., type: list}
absent: {description: The paths that do not exist., type: list}
wrong: {description: "Texts naming each present path whose owner, group or mode differ.",
        type: list}
wrong_items: {description: The given path dicts whose present path differs., type: list}
watchable: {description: The paths whose parent directory exists., type: list}
unwatchable: {description: The paths whose parent directory does not exist., type: list}
"""


def _name(lookup: Any, number: int) -> str:
    try:
        return str(lookup(number)[0])
    except KeyError:
        return str(number)


def _parent(path: str) -> str:
    # Same as the role's `regex_replace('/+$', '') | dirname`.
    return os.path.dirname(path.rstrip("/")) or "/"


def _mode_text(value: Any) -> str:
    # The policy gives modes as octal text ("0640"), compared as four octal digits.
    return "%04o" % int(str(value), 8)


def probe(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The state of every path and the differences from what each item wants."""
    state: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {
        "present": [],
        "absent": [],
        "wrong": [],
        "wrong_items": [],
        "watchable": [],
        "unwatchable": [],
    }
    for item in items:
        path = str(item["path"])
        parent = os.path.lexists(_parent(path))
        out["watchable" if parent else "unwatchable"].append(path)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            state[path] = {"exists": False, "parent_exists": parent}
            out["absent"].append(path)
            continue
        have = {
            "owner": _name(pwd.getpwuid, info.st_uid),
            "group": _name(grp.getgrgid, info.st_gid),
            "mode": "%04o" % stat.S_IMODE(info.st_mode),
        }
        state[path] = {"exists": True, "parent_exists": parent, **have}
        out["present"].append(path)
        if all(item.get(key) is not None for key in ("owner", "group", "mode")):
            want = f"{item['owner']}:{item['group']} {_mode_text(item['mode'])}"
            got = f"{have['owner']}:{have['group']} {have['mode']}"
            if want != got:
                out["wrong"].append(f"{path} is {got}, want {want}")
                out["wrong_items"].append(item)
    out["state"] = state
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={"paths": {"type": "list", "elements": "dict", "required": True}},
        supports_check_mode=True,
    )
    for number, item in enumerate(module.params["paths"]):
        if not item.get("path"):
            module.fail_json(msg=f"paths[{number}]: no path given")
    try:
        found = probe(module.params["paths"])
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"cannot read the paths: {exc}")
    module.exit_json(changed=False, **found)


if __name__ == "__main__":
    main()
