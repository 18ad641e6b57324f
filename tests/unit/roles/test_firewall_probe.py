"""firewall_probe's analysis of an nft JSON rule set and ss output, without a host."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

_PATH = Path(__file__).resolve().parents[3] / "roles" / "firewall" / "library" / "firewall_probe.py"
_SPEC = importlib.util.spec_from_file_location("firewall_probe", _PATH)
assert _SPEC and _SPEC.loader
fp = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fp)

TCP22 = {
    "match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}
}


def _saddr(addr: str, length: int) -> dict[str, Any]:
    return {
        "match": {
            "op": "==",
            "left": {"payload": {"protocol": "ip", "field": "saddr"}},
            "right": {"prefix": {"addr": addr, "len": length}},
        }
    }


def _rule(handle: int, *expr: dict[str, Any]) -> dict[str, Any]:
    return {
        "rule": {
            "family": "inet",
            "table": "opsrunner",
            "chain": "input",
            "handle": handle,
            "expr": list(expr),
        }
    }


def _ruleset(
    policy: str = "drop", extra: tuple[dict[str, Any], ...] = (), log: bool = True
) -> list[dict[str, Any]]:
    rules = [
        {
            "chain": {
                "family": "inet",
                "table": "opsrunner",
                "name": "input",
                "hook": "input",
                "prio": 0,
                "policy": policy,
            }
        },
        _rule(
            1,
            {"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}},
            {"accept": None},
        ),
        _rule(
            2,
            {
                "match": {
                    "op": "in",
                    "left": {"ct": {"key": "state"}},
                    "right": ["established", "related"],
                }
            },
            {"accept": None},
        ),
        _rule(3, _saddr("10.0.0.0", 8), TCP22, {"accept": None}),
        _rule(
            4,
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                    "right": {"set": [80, 9100]},
                }
            },
            {"accept": None},
        ),
        _rule(
            5,
            {
                "match": {
                    "op": "==",
                    "left": {"meta": {"key": "l4proto"}},
                    "right": {"set": ["icmp", "ipv6-icmp"]},
                }
            },
            {"accept": None},
        ),
        *extra,
    ]
    if log:
        rules.append(
            _rule(
                9,
                {"limit": {"rate": 5, "per": "minute"}},
                {"log": {"prefix": "opsrunner-fw-drop: "}},
            )
        )
    return rules


PARAMS = {
    "allowed_tcp_ports": [80, 9100],
    "allowed_udp_ports": [],
    "ssh_port": 22,
    "admin_networks": ["10.0.0.0/8"],
    "client_address": "10.233.1.1",
    "_ss": 'tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=1,fd=3))\n'
    "udp UNCONN 0 0 127.0.0.1:323 0.0.0.0:*\n",
}


def test_policy_rule_set_is_compliant() -> None:
    r = fp._analyse(_ruleset(), PARAMS)
    assert r["input_policy_drop"] and r["loopback_accepted"] and r["established_accepted"]
    assert r["drop_logging"] and r["client_covered"]
    assert r["unexpected"] == [] and r["ssh_uncovered"] == [] and r["uncovered_listeners"] == []


@pytest.mark.parametrize(
    ("ruleset", "key", "expected"),
    [
        (_ruleset(policy="accept"), "input_policy_drop", False),
        (_ruleset(log=False), "drop_logging", False),
        (
            _ruleset(
                extra=(
                    _rule(
                        7,
                        {
                            "match": {
                                "op": "==",
                                "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                                "right": 8080,
                            }
                        },
                        {"accept": None},
                    ),
                )
            ),
            "unexpected",
            ["tcp/8080 from any (inet opsrunner input handle 7)"],
        ),
        (
            _ruleset(extra=(_rule(8, _saddr("192.0.2.0", 24), {"accept": None}),)),
            "unexpected",
            ["any/0-65535 from 192.0.2.0/24 (inet opsrunner input handle 8)"],
        ),
    ],
)
def test_each_break_is_seen(ruleset: list[dict[str, Any]], key: str, expected: object) -> None:
    r = fp._analyse(ruleset, PARAMS)
    got = [s["text"] for s in r[key]] if isinstance(expected, list) else r[key]
    assert got == expected


def test_ssh_narrowed_to_one_address_leaves_the_admin_network_uncovered() -> None:
    rules = [x for x in _ruleset() if x.get("rule", {}).get("handle") != 3]
    rules.append(_rule(3, _saddr("10.233.1.1", 32), TCP22, {"accept": None}))
    assert fp._analyse(rules, PARAMS)["ssh_uncovered"] == ["10.0.0.0/8"]


def test_wildcard_listener_outside_the_allowlist() -> None:
    params = {
        **PARAMS,
        "_ss": PARAMS["_ss"] + 'tcp LISTEN 0 5 [::]:8081 [::]:* users:(("python3",pid=9,fd=3))\n',
    }
    found = fp._analyse(_ruleset(), params)["uncovered_listeners"]
    assert [x["text"] for x in found] == ["tcp [::]:8081 (python3)"]


def test_boot_file_compares_content_owner_and_mode(tmp_path: Path) -> None:
    conf = tmp_path / "nftables.conf"
    missing = fp._boot_file(str(conf), "table inet opsrunner {}\n", "0700")
    assert not missing["exists"] and not missing["content_matches"]
    conf.write_text("table inet opsrunner {}\n")
    conf.chmod(0o644)
    got = fp._boot_file(str(conf), "table inet opsrunner {}\n", "0700")
    assert got["content_matches"] and got["mode"] == "0644" and not got["mode_ok"]
    conf.chmod(0o700)
    assert fp._boot_file(str(conf), "table inet opsrunner {}\n", "0700")["mode_ok"]
    changed = fp._boot_file(str(conf), "table inet other {}\n", "0700")
    assert not changed["content_matches"] and "+table inet other {}" in changed["diff"]
