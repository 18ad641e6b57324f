"""Read-only probe of the live nftables rule set and listening sockets (role firewall)."""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

DOCUMENTATION = r"""
---
module: firewall_probe
short_description: Analyse the live nftables input hook and the listening sockets
description:
  - Runs C(nft -j list ruleset) and C(ss -Htlnup) and reports what the input hook
    really lets in, so the firewall controls judge the kernel's state, not only
    the file on disk. Never changes the host; safe in check mode.
  - A packet reaches a local socket only if every input base chain accepts it,
    so the open ports are those accepted by every chain whose policy is drop.
  - Given C(config_content) (the policy rule set rendered on the controller), it
    also compares the boot-time file (content, owner root:root, mode) and asks
    systemd whether C(service) is enabled, so the audit of FW-004 needs no
    template or service task on the host (one round trip for the whole role).
options:
  allowed_tcp_ports:
    {type: list, elements: int, default: [], description: TCP ports the policy allows.}
  allowed_udp_ports:
    {type: list, elements: int, default: [], description: UDP ports the policy allows.}
  ssh_port: {type: int, default: 22, description: The management SSH port.}
  admin_networks:
    {type: list, elements: str, default: [], description: Networks SSH is always accepted from.}
  client_address:
    {type: str, default: "", description: Address of the current management connection.}
  config_path:
    {type: str, default: "", description: "Boot-time rule set file (empty: not compared)."}
  config_content: {type: str, default: "", description: The policy rule set the file should hold.}
  config_mode: {type: str, default: "0700", description: The file's wanted mode (octal).}
  service:
    {type: str, default: "", description: "Unit that loads the file at boot (empty: not asked)."}
author: opsrunner
"""

RETURN = r"""
input_policy_drop: {description: Some input base chain drops by default., type: bool}
chains: {description: Every base chain on the input hook., type: list}
open: {description: Accepted services of the drop chains (proto, ports, sources)., type: list}
unexpected: {description: Accepted services that the allowlist does not cover., type: list}
loopback_accepted: {description: Every drop chain accepts loopback traffic., type: bool}
established_accepted: {description: Every drop chain accepts established/related., type: bool}
ssh_uncovered: {description: Admin networks from which SSH is not accepted., type: list}
drop_logging: {description: Every drop chain logs with a rate limit., type: bool}
listeners: {description: Sockets listening on non-loopback addresses., type: list}
uncovered_listeners: {description: Listeners whose port the allowlist does not cover., type: list}
client_covered: {description: The management client is inside an admin network., type: bool}
boot:
  description: >-
    Boot-time state (path, exists, content_matches, owner_ok, mode, mode_ok, ok,
    diff, service, service_enabled, service_state); empty without config_path.
  type: dict
"""

_ALL = "any"


def _port_ranges(right: Any) -> list[tuple[int, int]] | None:
    """Port ranges of a match's right side; None when the form is not understood."""
    if isinstance(right, int):
        return [(right, right)]
    if isinstance(right, dict):
        if "range" in right:
            low, high = right["range"]
            return [(int(low), int(high))]
        if "set" in right:
            out: list[tuple[int, int]] = []
            for item in right["set"]:
                sub = _port_ranges(item)
                if sub is None:
                    return None
                out.extend(sub)
            return out
    return None


def _networks(right: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None:
    """Source networks of a saddr match; None when the form is not understood."""
    if isinstance(right, str):
        if right.startswith("@"):
            return None
        return [ipaddress.ip_network(right, strict=False)]
    if isinstance(right, dict):
        if "prefix" in right:
            pfx = right["prefix"]
            return [ipaddress.ip_network(f"{pfx['addr']}/{pfx['len']}", strict=False)]
        if "range" in right:
            low, high = (ipaddress.ip_address(a) for a in right["range"])
            return list(ipaddress.summarize_address_range(low, high))
        if "set" in right:
            out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
            for item in right["set"]:
                sub = _networks(item)
                if sub is None:
                    return None
                out.extend(sub)
            return out
    return None


def _words(right: Any) -> list[str]:
    if isinstance(right, str):
        return [right]
    if isinstance(right, list):
        return [str(x) for x in right]
    if isinstance(right, dict) and "set" in right:
        return [str(x) for x in right["set"]]
    return []


def _classify(rule: dict[str, Any]) -> dict[str, Any]:
    """Summarise one rule: verdict, protocol/ports, sources and special matches."""
    info: dict[str, Any] = {
        "handle": rule.get("handle"),
        "verdict": None,
        "protos": None,
        "ports": None,
        "sources": None,
        "loopback": False,
        "established": False,
        "icmp": False,
        "log": False,
        "limit": False,
        "opaque": False,
        "text": "",
    }
    for expr in rule.get("expr", []):
        if not isinstance(expr, dict):
            continue
        for verdict in ("accept", "drop", "reject", "jump", "goto"):
            if verdict in expr:
                info["verdict"] = verdict
        if "log" in expr:
            info["log"] = True
        if "limit" in expr:
            info["limit"] = True
        match = expr.get("match")
        if not isinstance(match, dict):
            continue
        left, right = match.get("left", {}), match.get("right")
        if not isinstance(left, dict):
            info["opaque"] = True
            continue
        payload, meta, ct = left.get("payload"), left.get("meta"), left.get("ct")
        if isinstance(payload, dict):
            proto, field = payload.get("protocol"), payload.get("field")
            if proto in ("tcp", "udp", "th") and field == "dport":
                info["protos"] = info["protos"] or (["tcp", "udp"] if proto == "th" else [proto])
                info["ports"] = _port_ranges(right)
                if info["ports"] is None:
                    info["opaque"] = True
            elif proto in ("ip", "ip6") and field == "saddr":
                nets = _networks(right)
                if nets is None:
                    info["opaque"] = True
                else:
                    info["sources"] = (info["sources"] or []) + nets
            elif proto in ("icmp", "icmpv6"):
                info["icmp"] = True
            else:
                info["opaque"] = True
        elif isinstance(meta, dict):
            key = meta.get("key")
            if key in ("iif", "iifname") and "lo" in _words(right):
                info["loopback"] = True
            elif key == "l4proto":
                words = _words(right)
                if words and set(words) <= {"icmp", "ipv6-icmp", "icmpv6", "1", "58"}:
                    info["icmp"] = True
                else:
                    info["protos"] = [w for w in words if w in ("tcp", "udp")] or None
            elif key == "nfproto":
                pass
            else:
                info["opaque"] = True
        elif isinstance(ct, dict) and ct.get("key") == "state":
            if {"established", "related"} & set(_words(right)):
                info["established"] = True
        else:
            info["opaque"] = True
    return info


def _service(info: dict[str, Any]) -> list[dict[str, Any]]:
    """What an accept rule opens: one entry per protocol, or one 'any' entry."""
    sources = [str(n) for n in info["sources"]] if info["sources"] else ["any"]
    if info["ports"] is None:
        return [
            {"proto": _ALL, "ports": [[0, 65535]], "sources": sources, "handle": info["handle"]}
        ]
    return [
        {
            "proto": p,
            "ports": [list(r) for r in info["ports"]],
            "sources": sources,
            "handle": info["handle"],
        }
        for p in (info["protos"] or ["tcp", "udp"])
    ]


def _covers(ranges: list[tuple[int, int]] | list[list[int]], port: int) -> bool:
    return any(low <= port <= high for low, high in ranges)


def _analyse(ruleset: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for item in ruleset:
        if "chain" in item:
            c = item["chain"]
            key = (c["family"], c["table"], c["name"])
            if c.get("hook") == "input" and c.get("family") in ("inet", "ip", "ip6"):
                chains[key] = {
                    "family": c["family"],
                    "table": c["table"],
                    "name": c["name"],
                    "policy": c.get("policy", "accept"),
                    "prio": c.get("prio"),
                }
        elif "rule" in item:
            r = item["rule"]
            rules.setdefault((r["family"], r["table"], r["chain"]), []).append(r)

    drop_chains = [k for k, c in chains.items() if c["policy"] == "drop"]
    admin = [ipaddress.ip_network(n, strict=False) for n in params["admin_networks"]]
    ssh_port = params["ssh_port"]
    allowed = {
        "tcp": set(params["allowed_tcp_ports"]) | {ssh_port},
        "udp": set(params["allowed_udp_ports"]),
    }

    open_services: list[dict[str, Any]] = []
    unexpected: list[dict[str, Any]] = []
    loopback_all = bool(drop_chains)
    established_all = bool(drop_chains)
    logging_all = bool(drop_chains)
    ssh_uncovered = {str(n) for n in admin} if drop_chains else set()
    uncovered_per_chain: list[set[str]] = []
    for key in drop_chains:
        infos = [_classify(r) for r in rules.get(key, [])]
        accepts = [i for i in infos if i["verdict"] == "accept"]
        loopback_all &= any(i["loopback"] for i in accepts)
        established_all &= any(i["established"] for i in accepts)
        logging_all &= any(i["log"] and i["limit"] for i in infos)
        chain_name = " ".join(key)
        uncovered = {str(n) for n in admin}
        for info in accepts:
            if info["loopback"] or info["established"] or info["icmp"]:
                continue
            for svc in _service(info):
                svc["chain"] = chain_name
                ports = ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in svc["ports"])
                svc["text"] = (
                    f"{svc['proto']}/{ports} from {','.join(svc['sources'])}"
                    f" ({chain_name} handle {svc['handle']})"
                )
                open_services.append(svc)
                if svc["proto"] == _ALL or any(
                    p not in allowed[svc["proto"]]
                    for low, high in svc["ports"]
                    for p in range(low, min(high, low + 1024) + 1)
                ):
                    unexpected.append(svc)
                if svc["proto"] in ("tcp", _ALL) and _covers(svc["ports"], ssh_port):
                    srcs = info["sources"]
                    for net in admin:
                        if srcs is None or any(
                            net.version == s.version and net.subnet_of(s) for s in srcs
                        ):
                            uncovered.discard(str(net))
        uncovered_per_chain.append(uncovered)
    if drop_chains:
        ssh_uncovered = set().union(*uncovered_per_chain)

    listeners = _listeners(params["_ss"])
    uncovered_listeners = [
        lst for lst in listeners if lst["port"] not in allowed.get(lst["proto"], set())
    ]

    client = params["client_address"].strip()
    client_covered: bool | None = None
    if client:
        addr = ipaddress.ip_address(client)
        client_covered = any(addr in n for n in admin)

    return {
        "input_policy_drop": bool(drop_chains),
        "chains": list(chains.values()),
        "open": open_services,
        "unexpected": unexpected,
        "loopback_accepted": loopback_all,
        "established_accepted": established_all,
        "ssh_uncovered": sorted(ssh_uncovered),
        "drop_logging": logging_all,
        "listeners": listeners,
        "uncovered_listeners": uncovered_listeners,
        "client_covered": client_covered,
    }


def _listeners(ss_text: str) -> list[dict[str, Any]]:
    """Non-loopback listening sockets from `ss -Htlnup` output."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str, int]] = set()
    for line in ss_text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        proto = fields[0]
        local = fields[4]
        host, _, port_text = local.rpartition(":")
        host = host.strip("[]").split("%", 1)[0]
        if not port_text.isdigit() or proto not in ("tcp", "udp"):
            continue
        if host not in ("*", "0.0.0.0", "::", ""):  # noqa: S104 - wildcard listeners are exposed
            try:
                if ipaddress.ip_address(host).is_loopback:
                    continue
            except ValueError:
                pass
        process = ""
        if len(fields) > 6 and fields[6].startswith("users:"):
            process = fields[6].split('"')[1] if '"' in fields[6] else fields[6]
        key = (proto, host, int(port_text))
        if key in seen:
            continue
        seen.add(key)
        shown = f"[{host}]" if ":" in host else (host or "*")
        text = f"{proto} {shown}:{port_text}" + (f" ({process})" if process else "")
        out.append(
            {
                "proto": proto,
                "address": host or "*",
                "port": int(port_text),
                "process": process,
                "text": text,
            }
        )
    return sorted(out, key=lambda x: (x["proto"], x["port"], x["address"]))


def _boot_file(path: str, want: str, mode: str) -> dict[str, Any]:
    """Compare the boot-time file with the wanted content, owner root:root and mode."""
    out: dict[str, Any] = {
        "path": path,
        "exists": False,
        "content_matches": False,
        "owner_ok": False,
        "mode": "",
        "mode_ok": False,
        "diff": "",
    }
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            have = fh.read()
    except FileNotFoundError:
        out["diff"] = f"{path} is missing"
        return out
    out["exists"] = True
    out["owner_ok"] = st.st_uid == 0 and st.st_gid == 0
    out["mode"] = f"{stat.S_IMODE(st.st_mode):04o}"
    out["mode_ok"] = stat.S_IMODE(st.st_mode) == int(mode, 8)
    out["content_matches"] = have == want.encode()
    if not out["content_matches"]:
        lines = difflib.unified_diff(
            have.decode(errors="replace").splitlines(),
            want.splitlines(),
            f"{path} (host)",
            f"{path} (policy)",
            lineterm="",
            n=1,
        )
        out["diff"] = "\n".join(list(lines)[:60])
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "allowed_tcp_ports": {"type": "list", "elements": "int", "default": []},
            "allowed_udp_ports": {"type": "list", "elements": "int", "default": []},
            "ssh_port": {"type": "int", "default": 22},
            "admin_networks": {"type": "list", "elements": "str", "default": []},
            "client_address": {"type": "str", "default": ""},
            "config_path": {"type": "str", "default": ""},
            "config_content": {"type": "str", "default": ""},
            "config_mode": {"type": "str", "default": "0700"},
            "service": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    boot: dict[str, Any] = {}
    if module.params["config_path"]:
        boot = _boot_file(
            module.params["config_path"],
            module.params["config_content"],
            module.params["config_mode"],
        )
        boot["ok"] = boot["content_matches"] and boot["owner_ok"] and boot["mode_ok"]
    if module.params["service"]:
        systemctl = module.get_bin_path("systemctl", required=True)
        # rc 0 of is-enabled is what systemd (and the systemd_service module) call enabled.
        rc, state, _err = module.run_command([systemctl, "is-enabled", module.params["service"]])
        boot["service"] = module.params["service"]
        boot["service_enabled"] = rc == 0
        boot["service_state"] = state.strip() or "not-found"
    nft = module.get_bin_path("nft", required=True)
    ss = module.get_bin_path("ss", required=True)
    rc, out, err = module.run_command([nft, "-j", "list", "ruleset"])
    if rc != 0:
        module.fail_json(msg=f"nft -j list ruleset failed: {err.strip() or out.strip()}", boot=boot)
    try:
        ruleset = json.loads(out or '{"nftables": []}').get("nftables", [])
    except ValueError as exc:
        module.fail_json(msg=f"nft -j list ruleset printed no JSON: {exc}", boot=boot)
    rc, ss_out, err = module.run_command([ss, "-Htlnup"])
    if rc != 0:
        module.fail_json(msg=f"ss -Htlnup failed: {err.strip()}", boot=boot)
    params = dict(module.params)
    params["_ss"] = ss_out
    try:
        result = _analyse(ruleset, params)
    except ValueError as exc:
        module.fail_json(msg=f"cannot analyse the rule set: {exc}", boot=boot)
    module.exit_json(changed=False, boot=boot, **result)


if __name__ == "__main__":
    main()
