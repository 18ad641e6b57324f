"""Filters that read `sshd -T` output and compare it with the policy's settings."""

from __future__ import annotations

from typing import Any

# Keywords that sshd -T prints once per value.
_MULTI = frozenset(
    (
        "allowgroups",
        "allowusers",
        "denygroups",
        "denyusers",
        "hostkey",
        "listenaddress",
        "port",
        "acceptenv",
        "setenv",
        "include",
        "subsystem",
    )
)
# Algorithm lists: the host may offer only what the policy allows.
_ALGORITHMS = frozenset(
    ("ciphers", "macs", "kexalgorithms", "hostkeyalgorithms", "pubkeyacceptedalgorithms")
)
# sshd -T prints the legacy spelling of prohibit-password.
_ALIASES = {"without-password": "prohibit-password"}


def sshd_effective(lines: list[str]) -> dict[str, Any]:
    """Turn `sshd -T` lines into {keyword: value}; multi-valued keywords give lists."""
    effective: dict[str, Any] = {}
    for line in lines:
        key, _, value = line.strip().partition(" ")
        if not key:
            continue
        key = key.lower()
        if key in _MULTI:
            effective.setdefault(key, []).extend(value.split())
        else:
            effective[key] = value
    return effective


def _norm(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value).strip()
    return _ALIASES.get(text.lower(), text.lower())


def sshd_mismatches(effective: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Describe every keyword whose effective value differs from the wanted one."""
    problems: list[str] = []
    for keyword, wanted in want.items():
        key = keyword.lower()
        have = effective.get(key, [] if key in _MULTI else None)
        if have is None:
            problems.append(f"{keyword} not reported by sshd -T (want {wanted})")
        elif key in _ALGORITHMS:
            allowed = list(wanted) if isinstance(wanted, list) else str(wanted).split(",")
            extra = [a for a in str(have).split(",") if a not in allowed]
            if extra:
                problems.append(f"{keyword} allows {','.join(extra)} not in the policy's list")
        elif key in _MULTI:
            wanted_set = set(wanted if isinstance(wanted, list) else str(wanted).split())
            have_set = set(have)
            if wanted_set != have_set:
                extra = sorted(have_set - wanted_set)
                missing = sorted(wanted_set - have_set)
                problems.append(
                    f"{keyword} is {' '.join(sorted(have_set)) or 'unset (anyone may log in)'}; "
                    f"extra: {' '.join(extra) or '-'}; missing: {' '.join(missing) or '-'}"
                )
        elif _norm(have) != _norm(wanted):
            problems.append(f"{keyword} is {have}, policy wants {_norm(wanted)}")
    return problems


def sshd_line(keyword: str, value: Any) -> str:
    """Render one sshd_config line for a wanted value."""
    if isinstance(value, list):
        sep = "," if keyword.lower() in _ALGORITHMS else " "
        return f"{keyword} {sep.join(str(v) for v in value)}"
    return f"{keyword} {_norm(value) if isinstance(value, bool) else value}"


def ssh_allow_groups(
    roster: dict[str, Any], host_groups: list[str], management: list[str], extra: list[str]
) -> list[str]:
    """Groups allowed to log in: management, the policy's extra groups, the groups of every
    job role with ssh: true, and the personal group (Debian's user private group) of each
    active or transferred person of such a role who has an account on this host."""
    role_map = roster.get("role_map") or {}
    ssh_roles = {name for name, spec in role_map.items() if (spec or {}).get("ssh")}
    allowed = set(management) | set(extra)
    for name in ssh_roles:
        allowed.update((role_map[name] or {}).get("groups") or [])
    here = set(host_groups) | {"all"}
    for person in roster.get("people") or []:
        if (
            person.get("status") in ("active", "transferred")
            and person.get("role") in ssh_roles
            and here & set(person.get("hosts") or [])
        ):
            allowed.add(str(person["user"]))
    return sorted(allowed)


class FilterModule:
    """secure_transport's sshd filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "sshd_effective": sshd_effective,
            "sshd_mismatches": sshd_mismatches,
            "sshd_line": sshd_line,
            "ssh_allow_groups": ssh_allow_groups,
        }
