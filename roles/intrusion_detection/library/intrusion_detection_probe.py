#!/usr/bin/python
"""Read-only probe of everything role intrusion_detection checks, in one round trip."""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: intrusion_detection_probe
short_description: fail2ban packages, service, jail files, live jail and nftables bans in one call
description:
  - >-
    Reads the install state of C(packages) (dpkg), whether C(service) is enabled and active
    (systemd), how each file of C(files) compares with the content the role renders on the
    controller (content, owner root:root, mode), the running fail2ban server's jail over its
    control socket (the protocol of fail2ban-client; thresholds, actions, ignore list, banned
    addresses) and the elements of the jail's nftables set (C(inet f2b-table addr-set-<jail>)).
  - >-
    Read-only; never changes the host and answers the same in check mode, so the audit of
    IDS-001..IDS-003 is this one task per host plus the reports on the controller.
options:
  jail: {description: Jail name., type: str, default: sshd}
  socket:
    {description: fail2ban's control socket., type: path, default: /run/fail2ban/fail2ban.sock}
  nft_table:
    description: nftables table of the fail2ban nftables actions (family inet).
    type: str
    default: f2b-table
  packages: {description: "Packages that must be installed (empty: not asked).", type: list,
             elements: str, default: []}
  service: {description: "Service that must be enabled and active (empty: not asked).", type: str,
            default: ""}
  files:
    description: Files to compare, each C(path), C(content) and C(mode) (octal string).
    type: list
    elements: dict
    default: []
"""

RETURN = r"""
packages:
  description: Per package, whether dpkg has it installed.
  type: dict
  returned: always
missing_packages: {description: Packages not installed., type: list, returned: always}
service:
  description: >-
    C(name), C(enabled), C(active), C(enabled_state), C(active_state); empty without service.
  type: dict
  returned: always
files:
  description: Per path C(exists), C(content_matches), C(owner_ok), C(mode), C(mode_ok), C(ok).
  type: dict
  returned: always
running: {description: The fail2ban server answered ping., type: bool, returned: always}
jails: {description: Jails the server runs., type: list, returned: always}
jail:
  description: >-
    The jail's maxretry, findtime, bantime, actions, ignoreip, banned and journalmatch
    (empty if the jail does not run).
  type: dict
  returned: always
nft_banned: {description: Addresses in the jail's nftables set., type: list, returned: always}
error: {description: Why the live jail could not be read (empty when it could)., type: str,
        returned: always}
"""


def _ask(sock_path: str, *cmd: str) -> Any:
    from fail2ban.client.csocket import CSocket

    sock = CSocket(sock_path, timeout=10)
    try:
        code, value = sock.send(list(cmd))
    finally:
        sock.close()
    if code != 0:
        raise RuntimeError(f"fail2ban {' '.join(cmd)}: {value}")
    return value


def _nft_set(module: AnsibleModule, table: str, jail: str) -> list[str]:
    rc, out, _ = module.run_command(["nft", "-j", "list", "set", "inet", table, f"addr-set-{jail}"])
    if rc != 0:  # the action creates the table on its first ban
        return []
    banned: list[str] = []
    for item in json.loads(out).get("nftables", []):
        for elem in item.get("set", {}).get("elem", []):
            banned.append(elem if isinstance(elem, str) else json.dumps(elem))
    return banned


def _packages(module: AnsibleModule, names: list[str]) -> dict[str, bool]:
    """dpkg's view: installed means status 'install ok installed' (what apt state=present wants)."""
    if not names:
        return {}
    _rc, out, _err = module.run_command(
        ["dpkg-query", "-W", "-f", "${Package} ${Status}\\n", *names]
    )
    installed = {
        line.split()[0]
        for line in out.splitlines()
        if line.strip().endswith("install ok installed")
    }
    return {name: name in installed for name in names}


def _service(module: AnsibleModule, name: str) -> dict[str, Any]:
    if not name:
        return {}
    systemctl = module.get_bin_path("systemctl", required=True)
    rc_en, enabled, _ = module.run_command([systemctl, "is-enabled", name])
    rc_act, active, _ = module.run_command([systemctl, "is-active", name])
    return {
        "name": name,
        "enabled": rc_en == 0,
        "active": rc_act == 0,
        "enabled_state": enabled.strip() or "not-found",
        "active_state": active.strip() or "unknown",
    }


def _file(path: str, want: str, mode: str) -> dict[str, Any]:
    """Compare a file with the wanted content, owner root:root and mode (as the template would)."""
    out: dict[str, Any] = {
        "exists": False,
        "content_matches": False,
        "owner_ok": False,
        "mode": "",
        "mode_ok": False,
        "ok": False,
    }
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            have = fh.read()
    except FileNotFoundError:
        return out
    out["exists"] = True
    out["content_matches"] = have == want.encode()
    out["owner_ok"] = st.st_uid == 0 and st.st_gid == 0
    out["mode"] = f"{stat.S_IMODE(st.st_mode):04o}"
    out["mode_ok"] = stat.S_IMODE(st.st_mode) == int(mode, 8)
    out["ok"] = out["content_matches"] and out["owner_ok"] and out["mode_ok"]
    return out


def _jail(module: AnsibleModule, sock: str, jail: str) -> dict[str, Any]:
    result: dict[str, Any] = {"running": False, "jails": [], "jail": {}, "error": ""}
    try:
        result["running"] = _ask(sock, "ping") == "pong"
        status = dict(_ask(sock, "status"))
        result["jails"] = [
            j.strip() for j in str(status.get("Jail list", "")).split(",") if j.strip()
        ]
        if jail in result["jails"]:
            state: dict[str, Any] = {}
            for key in ("maxretry", "findtime", "bantime"):
                state[key] = int(_ask(sock, "get", jail, key))
            state["actions"] = [str(a) for a in _ask(sock, "get", jail, "actions")]
            state["ignoreip"] = [str(a) for a in _ask(sock, "get", jail, "ignoreip")]
            state["banned"] = [str(a) for a in _ask(sock, "get", jail, "banip")]
            state["journalmatch"] = [" + ".join(m) for m in _ask(sock, "get", jail, "journalmatch")]
            result["jail"] = state
    except ImportError:
        result["error"] = "fail2ban is not installed (python module fail2ban missing)"
    except Exception as exc:
        result["error"] = f"fail2ban server not answering on {sock}: {exc}"
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "jail": {"type": "str", "default": "sshd"},
            "socket": {"type": "path", "default": "/run/fail2ban/fail2ban.sock"},
            "nft_table": {"type": "str", "default": "f2b-table"},
            "packages": {"type": "list", "elements": "str", "default": []},
            "service": {"type": "str", "default": ""},
            "files": {"type": "list", "elements": "dict", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    packages = _packages(module, params["packages"])
    result: dict[str, Any] = {
        "changed": False,
        "packages": packages,
        "missing_packages": [name for name, ok in packages.items() if not ok],
        "service": _service(module, params["service"]),
        "files": {
            str(f["path"]): _file(
                str(f["path"]), str(f.get("content", "")), str(f.get("mode", "0644"))
            )
            for f in params["files"]
        },
        "nft_banned": _nft_set(module, params["nft_table"], params["jail"]),
    }
    result.update(_jail(module, params["socket"], params["jail"]))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
