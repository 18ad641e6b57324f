#!/usr/bin/python
"""Read fail2ban's live state for one jail over its control socket, and the bans in nftables."""

from __future__ import annotations

import json
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: fail2ban_state
short_description: Live state of a fail2ban jail and the addresses its nftables action blocks
description:
  - Asks the running fail2ban server over its socket (the same protocol as fail2ban-client)
    for the jail's thresholds, actions, ignore list and banned addresses, and lists the elements
    of the jail's nftables set (C(inet f2b-table addr-set-<jail>)).
  - Read-only; answers in check mode too.
options:
  jail:
    description: Jail name.
    type: str
    default: sshd
  socket:
    description: fail2ban's control socket.
    type: path
    default: /run/fail2ban/fail2ban.sock
  nft_table:
    description: nftables table of the fail2ban nftables actions (family inet).
    type: str
    default: f2b-table
"""

RETURN = r"""
running:
  description: The server answered ping.
  type: bool
  returned: always
jails:
  description: Jails the server runs.
  type: list
  returned: always
jail:
  description: maxretry
  findtime: null
  bantime: null
  actions: null
  ignoreip: null
  banned: null
  journalmatch of the jail (empty if absent).: null
  type: dict
  returned: always
nft_banned:
  description: Addresses in the jail's nftables set.
  type: list
  returned: always
error:
  description: Why the state could not be read (empty when it could).
  type: str
  returned: always
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


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "jail": {"type": "str", "default": "sshd"},
            "socket": {"type": "path", "default": "/run/fail2ban/fail2ban.sock"},
            "nft_table": {"type": "str", "default": "f2b-table"},
        },
        supports_check_mode=True,
    )
    jail, sock = module.params["jail"], module.params["socket"]
    result: dict[str, Any] = {
        "changed": False,
        "running": False,
        "jails": [],
        "jail": {},
        "nft_banned": [],
        "error": "",
    }
    result["nft_banned"] = _nft_set(module, module.params["nft_table"], jail)
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
    module.exit_json(**result)


if __name__ == "__main__":
    main()
