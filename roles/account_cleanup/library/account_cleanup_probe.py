"""Read-only probe of local accounts against the roster (role account_cleanup, ACC-001..ACC-008)."""
# An Ansible module runs on the managed host in Ansible's os.path idiom, like the
# project's plugins/ (where pyproject ignores PTH for the same reason).

from __future__ import annotations

import datetime as dt
import glob
import os
import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

DOCUMENTATION = r"""
---
module: account_cleanup_probe
short_description: Compare local accounts, keys, sudo rules and PAM settings with the roster
description:
  - Reads passwd, shadow, group, every account's authorized_keys, crontabs, processes,
    the sudoers files and the password/lockout configuration, and judges each
    account_cleanup control. Never changes the host; safe in check mode.
options:
  roster: {type: dict, required: true, description: opsrunner_roster (role_map and people).}
  groups: {type: list, elements: str, default: [all], description: The host's inventory groups.}
  today: {type: str, required: true, description: "Today's date (YYYY-MM-DD, UTC)."}
  deadline_days: {type: int, default: 1, description: Days after the end date to disable.}
  uid_min: {type: int, default: 1000, description: First uid of personal accounts.}
  allowed_accounts:
    {type: list, elements: str, default: [], description: Local accounts allowed off-roster.}
  sudo_allowed_principals:
    {type: list, elements: str, default: [root], description: Sudo principals always allowed.}
  sudoers_file: {type: str, required: true, description: The sudoers drop-in the role manages.}
  pwquality: {type: dict, default: {}, description: Minimum pwquality settings.}
  faillock: {type: dict, default: {}, description: faillock settings (deny is a maximum).}
  archive_home: {type: bool, default: false, description: Departed homes are archived.}
  archive_dir: {type: str, default: /var/backups/departed-homes, description: Archive place.}
author: opsrunner
"""

_NOLOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "")
_KEY_TYPE = re.compile(r"^(ssh-|ecdsa-|sk-)")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _table(path: str) -> list[list[str]]:
    lines = _read(path).splitlines()
    return [line.split(":") for line in lines if line and not line.startswith("#")]


def key_blob(line: str) -> str | None:
    """'type base64' of an authorized_keys or roster key line (options and comment dropped)."""
    tokens = line.strip().split()
    for i, tok in enumerate(tokens):
        if _KEY_TYPE.match(tok) and i + 1 < len(tokens):
            return f"{tok} {tokens[i + 1]}"
    return None


def _keys(home: str) -> tuple[list[str], list[str]]:
    """Key blobs and the files that hold them."""
    blobs: list[str] = []
    files: list[str] = []
    for name in ("authorized_keys", "authorized_keys2"):
        path = os.path.join(home, ".ssh", name)
        text = _read(path)
        found = [b for b in (key_blob(x) for x in text.splitlines() if not x.startswith("#")) if b]
        if found:
            files.append(path)
            blobs.extend(found)
    return blobs, files


def _processes() -> dict[int, int]:
    """uid → number of processes."""
    out: dict[int, int] = {}
    for status in glob.glob("/proc/[0-9]*/status"):
        for line in _read(status).splitlines():
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
                out[uid] = out.get(uid, 0) + 1
                break
    return out


def _sudo_rules() -> list[dict[str, Any]]:
    """Every user specification in sudoers and its includes: file, line, principals."""
    rules: list[dict[str, Any]] = []
    seen: set[str] = set()

    def include_dir(directory: str) -> list[str]:
        names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
        return [os.path.join(directory, n) for n in names if not n.endswith("~") and "." not in n]

    def walk(path: str) -> None:
        if path in seen:
            return
        seen.add(path)
        logical, start = "", 0
        for number, raw in enumerate(_read(path).splitlines(), 1):
            if not logical:
                start = number
            if raw.rstrip().endswith("\\"):
                logical += raw.rstrip()[:-1] + " "
                continue
            line, logical = (logical + raw).strip(), ""
            match = re.match(r"^[@#](include|includedir)\s+(\S+)", line)
            if match:
                target = match.group(2)
                if match.group(1) == "includedir":
                    for sub in include_dir(target):
                        walk(sub)
                else:
                    walk(target if target.startswith("/") else
                         os.path.join(os.path.dirname(path), target))
                continue
            if line.startswith("#") and not re.match(r"^#\d", line):
                continue
            line = line.split(" #", 1)[0].strip()
            if not line or "=" not in line:
                continue
            if re.match(r"^(Defaults|\w+_Alias)\b", line):
                continue
            left = line.split("=", 1)[0].strip()
            parts = left.rsplit(None, 1)
            if len(parts) != 2:
                continue
            principals = [p.strip() for p in parts[0].split(",") if p.strip()]
            rules.append({"file": path, "line": start, "principals": principals,
                          "text": line[:200]})

    walk("/etc/sudoers")
    return rules


def _config(paths: list[str]) -> dict[str, str]:
    """key = value settings; later files override earlier ones."""
    values: dict[str, str] = {}
    for path in paths:
        for raw in _read(path).splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if "=" in line:
                key, value = (x.strip() for x in line.split("=", 1))
                values[key] = value
            else:
                values[line] = "true"
    return values


def _pam_has(path: str, module: str, *args: str) -> bool:
    for raw in _read(path).splitlines():
        line = raw.split("#", 1)[0]
        if module in line and all(a in line.split() for a in args):
            return True
    return False


class Probe:
    """Everything read once; each control judged from it."""

    def __init__(self, p: dict[str, Any]) -> None:
        self.p = p
        self.today = dt.date.fromisoformat(p["today"])
        self.epoch_day = (self.today - dt.date(1970, 1, 1)).days
        self.passwd = {r[0]: r for r in _table("/etc/passwd") if len(r) >= 7}
        self.shadow = {r[0]: r for r in _table("/etc/shadow") if len(r) >= 2}
        self.group_rows = [r for r in _table("/etc/group") if len(r) >= 4]
        self.member_of: dict[str, set[str]] = {}
        for row in self.group_rows:
            for member in filter(None, row[3].split(",")):
                self.member_of.setdefault(member, set()).add(row[0])
        self.procs = _processes()
        self.rules = _sudo_rules()
        roster = p["roster"] or {}
        self.role_map: dict[str, Any] = roster.get("role_map") or {}
        host_groups = set(p["groups"]) | {"all"}
        self.people = [x for x in roster.get("people") or []
                       if set(x.get("hosts") or []) & host_groups]
        self.roster_users = {x["user"] for x in self.people}
        self.entitled = {x["user"] for x in self.people
                         if x.get("status") in ("active", "transferred")
                         and (self.role_map.get(x.get("role"), {}) or {}).get("sudo")}

    # -- per-account facts ---------------------------------------------------------
    def account(self, user: str) -> dict[str, Any] | None:
        row = self.passwd.get(user)
        if row is None:
            return None
        uid, home, shell = int(row[2]), row[5], row[6]
        shadow = self.shadow.get(user)
        pw = shadow[1] if shadow else None
        expire = shadow[7] if shadow and len(shadow) > 7 else ""
        keys, key_files = _keys(home)
        return {
            "user": user, "uid": uid, "home": home, "shell": shell,
            "home_exists": os.path.isdir(home),
            "locked": pw is not None and pw.startswith("!"),
            # usermod -U would leave an empty (password-less) hash: set "*" instead.
            "unlock_needs_star": pw is not None and pw.lstrip("!") in ("", "*"),
            "expired": expire.isdigit() and int(expire) <= self.epoch_day,
            "groups": sorted(self.member_of.get(user, set())),
            "keys": sorted(set(keys)), "key_files": key_files,
            "processes": self.procs.get(uid, 0),
            "crontab": os.path.exists(f"/var/spool/cron/crontabs/{user}"),
            "sudo": self.sudo_sources(user),
        }

    def sudo_sources(self, user: str) -> list[str]:
        groups = self.member_of.get(user, set())
        row = self.passwd.get(user)
        uid = row[2] if row else None
        out = []
        for rule in self.rules:
            for principal in rule["principals"]:
                name = principal.lstrip("!")
                if name == user or (uid is not None and name == f"#{uid}") or (
                        name.startswith("%") and name[1:] in groups):
                    out.append(f"{principal} ({rule['file']}:{rule['line']})")
        return out

    # -- controls --------------------------------------------------------------------
    def _people_check(self, status: str) -> dict[str, Any]:
        problems: list[str] = []
        checked: list[str] = []
        failing: list[str] = []
        accounts: dict[str, Any] = {}
        for person in self.people:
            if person.get("status") != status:
                continue
            user = person["user"]
            checked.append(user)
            grant = self.role_map.get(person.get("role"), {}) or {}
            acc = self.account(user)
            accounts[user] = acc
            before = len(problems)
            self._person_problems(person, status, grant, acc, problems)
            if len(problems) > before:
                failing.append(user)
        return {"passed": not problems, "problems": problems,
                "evidence": f"{status} accounts checked: {', '.join(checked) or 'none'}",
                "data": {"checked": checked, "failing": failing}}

    def _person_problems(self, person: dict[str, Any], status: str, grant: dict[str, Any],
                         acc: dict[str, Any] | None, problems: list[str]) -> None:
        """Append what differs between one roster person's account and their role."""
        user = person["user"]
        if acc is None:
            problems.append(f"{user}: no account")
            return
        if acc["locked"]:
            problems.append(f"{user}: account locked")
        if acc["expired"]:
            problems.append(f"{user}: account expired")
        want_groups = set(grant.get("groups") or [])
        have = set(acc["groups"])
        if have != want_groups:
            extra, missing = sorted(have - want_groups), sorted(want_groups - have)
            detail = []
            if extra:
                prev = set((self.role_map.get(str(person.get("previous_role")), {}) or {})
                           .get("groups") or [])
                from_prev = status == "transferred" and set(extra) & prev
                tag = " (previous role)" if from_prev else ""
                detail.append(f"extra groups {','.join(extra)}{tag}")
            if missing:
                detail.append(f"missing groups {','.join(missing)}")
            problems.append(f"{user}: {'; '.join(detail)} (role {person.get('role')})")
        want_keys = {b for b in (key_blob(k) for k in person.get("ssh_keys") or []) if b} \
            if grant.get("ssh") else set()
        if set(acc["keys"]) != want_keys:
            extra_k = len(set(acc["keys"]) - want_keys)
            missing_k = len(want_keys - set(acc["keys"]))
            problems.append(f"{user}: SSH keys differ from the roster "
                            f"({extra_k} not in the roster, {missing_k} missing)")
        if bool(acc["sudo"]) != bool(grant.get("sudo")):
            problems.append(
                f"{user}: sudo via {', '.join(acc['sudo'])} but role {person.get('role')}"
                " grants none" if acc["sudo"] else
                f"{user}: role {person.get('role')} grants sudo but the account has none")

    def departed(self) -> dict[str, Any]:
        problems: list[str] = []
        notes: list[str] = []
        due_now: list[str] = []
        pending: list[str] = []
        for person in self.people:
            if person.get("status") != "departed":
                continue
            user = person["user"]
            end = dt.date.fromisoformat(str(person["end_date"])[:10])
            due = end + dt.timedelta(days=self.p["deadline_days"])
            acc = self.account(user)
            if acc is None:
                notes.append(f"{user}: no account")
                continue
            if end <= self.today:
                due_now.append(user)
            left = []
            if not acc["locked"]:
                left.append("not locked")
            if not acc["expired"]:
                left.append("not expired")
            if acc["keys"]:
                left.append(f"{len(acc['keys'])} SSH key(s) in {', '.join(acc['key_files'])}")
            if acc["processes"]:
                left.append(f"{acc['processes']} process(es) running")
            if acc["crontab"]:
                left.append("crontab present")
            if acc["groups"]:
                left.append(f"groups {','.join(acc['groups'])}")
            if acc["sudo"]:
                left.append(f"sudo via {', '.join(acc['sudo'])}")
            if self.p["archive_home"] and acc["home_exists"]:
                left.append(f"home {acc['home']} not archived")
            if left:
                pending.append(user)
            if not left:
                notes.append(f"{user}: disabled")
            elif self.today > due:
                problems.append(f"{user} (left {end}, deadline {due}): {', '.join(left)}")
            else:
                notes.append(f"{user}: disable due by {due} ({', '.join(left)})")
        return {"passed": not problems, "problems": problems,
                "evidence": "; ".join(notes) or "no departed account on this host",
                "data": {"due_now": due_now, "pending": pending}}

    def unknown(self) -> dict[str, Any]:
        found = []
        for user, row in sorted(self.passwd.items()):
            uid = int(row[2])
            if uid < self.p["uid_min"] or uid == 65534 or user in self.roster_users:
                continue
            if user in self.p["allowed_accounts"]:
                continue
            found.append(f"{user} (uid {uid}, shell {row[6]})")
        return {"passed": not found, "problems": [f"not in the roster: {x}" for x in found],
                "evidence": f"personal accounts (uid >= {self.p['uid_min']}) outside the roster: "
                            f"{', '.join(found) or 'none'}",
                "data": {"unknown": found}}

    def empty_passwords(self) -> dict[str, Any]:
        found = []
        for user, row in sorted(self.passwd.items()):
            if row[6] in _NOLOGIN or row[6].endswith("/nologin"):
                continue
            shadow = self.shadow.get(user)
            if row[1] == "":
                found.append(f"{user}: empty password field in /etc/passwd")
            elif row[1] == "x" and shadow is None:
                found.append(f"{user}: no entry in /etc/shadow")
            elif row[1] == "x" and shadow is not None and shadow[1] == "":
                found.append(f"{user}: empty password hash in /etc/shadow")
        return {"passed": not found, "problems": found,
                "evidence": f"login accounts without a password hash: {len(found)}",
                "data": {"accounts": [x.split(":", 1)[0] for x in found]}}

    def shared_keys(self) -> dict[str, Any]:
        owners: dict[str, set[str]] = {}
        for user, row in self.passwd.items():
            for blob in _keys(row[5])[0]:
                owners.setdefault(blob, set()).add(user)
        roster_owner: dict[str, set[str]] = {}
        for person in self.people:
            for blob in filter(None, (key_blob(k) for k in person.get("ssh_keys") or [])):
                roster_owner.setdefault(blob, set()).add(person["user"])
        shared = {b: u for b, u in owners.items() if len(u) > 1}
        problems = [f"one key ({b.split()[0]} …{b.split()[1][-12:]}) on accounts "
                    f"{', '.join(sorted(u))}" for b, u in sorted(shared.items())]
        problems += [f"the roster gives one key to {', '.join(sorted(u))}"
                     for u in roster_owner.values() if len(u) > 1]
        return {"passed": not problems, "problems": problems,
                "evidence": f"{len(owners)} distinct authorized key(s); shared: {len(problems)}",
                "data": {"shared": {b: sorted(u) for b, u in shared.items()}}}

    def sudo_rules(self) -> dict[str, Any]:
        allowed = set(self.p["sudo_allowed_principals"]) | self.entitled
        problems = []
        for rule in self.rules:
            bad = [x for x in rule["principals"] if x.lstrip("!") not in allowed]
            if bad:
                problems.append(f"{rule['file']}:{rule['line']} grants {','.join(bad)}"
                                " sudo, which no role grants")
        for principal in allowed:
            if principal.startswith("%"):
                row = next((r for r in self.group_rows if r[0] == principal[1:]), None)
                members = set(filter(None, row[3].split(","))) if row else set()
                for member in sorted(members - self.entitled - {"root"}):
                    problems.append(f"{member} is in group {principal[1:]} (sudo) but no role"
                                    " grants it sudo")
        return {"passed": not problems, "problems": problems,
                "evidence": f"{len(self.rules)} sudo rule(s); allowed principals: "
                            f"{', '.join(sorted(allowed))}",
                "data": {"rules": self.rules,
                         "bad_files": sorted({r["file"] for r in self.rules
                                              if any(x.lstrip("!") not in allowed
                                                     for x in r["principals"])}),
                         "bad_members": [x.split(" ", 1)[0] for x in problems
                                         if " is in group " in x]}}

    def password_policy(self) -> dict[str, Any]:
        pwq = _config(["/etc/security/pwquality.conf",
                       *sorted(glob.glob("/etc/security/pwquality.conf.d/*.conf"))])
        flk = _config(["/etc/security/faillock.conf"])
        problems = []
        for key, want in sorted((self.p["pwquality"] or {}).items()):
            have = pwq.get(key)
            if have is None or not have.lstrip("-").isdigit() or int(have) < int(want):
                problems.append(f"pwquality {key} = {have or 'unset'} (policy: at least {want})")
        for key, want in sorted((self.p["faillock"] or {}).items()):
            have = flk.get(key)
            ok = have is not None and have.isdigit() and (
                0 < int(have) <= int(want) if key == "deny"
                else (int(have) >= int(want) or (key == "unlock_time" and int(have) == 0)))
            if not ok:
                rel = "at most" if key == "deny" else "at least"
                problems.append(f"faillock {key} = {have or 'unset'} (policy: {rel} {want})")
        pam = "/etc/pam.d/"
        if not _pam_has(pam + "common-password", "pam_pwquality.so"):
            problems.append("pam_pwquality.so not in common-password")
        if not (_pam_has(pam + "common-auth", "pam_faillock.so", "preauth")
                and _pam_has(pam + "common-auth", "pam_faillock.so", "authfail")):
            problems.append("pam_faillock.so preauth/authfail not in common-auth")
        if not _pam_has(pam + "common-account", "pam_faillock.so"):
            problems.append("pam_faillock.so not in common-account")
        return {"passed": not problems, "problems": problems,
                "evidence": "pwquality " + ", ".join(f"{k}={pwq.get(k, 'unset')}"
                                                     for k in sorted(self.p["pwquality"] or {}))
                            + "; faillock " + ", ".join(f"{k}={flk.get(k, 'unset')}"
                                                        for k in sorted(self.p["faillock"] or {})),
                "data": {"pwquality": pwq, "faillock": flk}}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "roster": {"type": "dict", "required": True},
            "groups": {"type": "list", "elements": "str", "default": ["all"]},
            "today": {"type": "str", "required": True},
            "deadline_days": {"type": "int", "default": 1},
            "uid_min": {"type": "int", "default": 1000},
            "allowed_accounts": {"type": "list", "elements": "str", "default": []},
            "sudo_allowed_principals": {"type": "list", "elements": "str", "default": ["root"]},
            "sudoers_file": {"type": "str", "required": True},
            "pwquality": {"type": "dict", "default": {}},
            "faillock": {"type": "dict", "default": {}},
            "archive_home": {"type": "bool", "default": False},
            "archive_dir": {"type": "str", "default": "/var/backups/departed-homes"},
        },
        supports_check_mode=True,
    )
    try:
        probe = Probe(module.params)
        controls = {
            "ACC-001": probe._people_check("active"),
            "ACC-002": probe.departed(),
            "ACC-003": probe._people_check("transferred"),
            "ACC-004": probe.unknown(),
            "ACC-005": probe.empty_passwords(),
            "ACC-006": probe.shared_keys(),
            "ACC-007": probe.sudo_rules(),
            "ACC-008": probe.password_policy(),
        }
        existing = {u: probe.account(u) for u in probe.roster_users if u in probe.passwd}
        people = [_person(probe, x, existing.get(x["user"])) for x in probe.people]
    except (ValueError, KeyError, OSError) as exc:
        module.fail_json(msg=f"account probe failed: {type(exc).__name__}: {exc}")
    module.exit_json(changed=False, controls=controls, accounts=existing, people=people)


def _person(probe: Probe, person: dict[str, Any], acc: dict[str, Any] | None) -> dict[str, Any]:
    """A roster person on this host, with the role's grant and what enforce must do."""
    grant = probe.role_map.get(str(person.get("role")), {}) or {}
    end = person.get("end_date")
    return {
        "user": person["user"], "name": person.get("name") or person["user"],
        "status": person.get("status"), "role": person.get("role"),
        "groups": list(grant.get("groups") or []), "sudo": bool(grant.get("sudo")),
        "ssh": bool(grant.get("ssh")),
        "ssh_keys": list(person.get("ssh_keys") or []) if grant.get("ssh") else [],
        "end_date": str(end)[:10] if end else None,
        "disable_now": bool(end) and dt.date.fromisoformat(str(end)[:10]) <= probe.today,
        "exists": acc is not None,
        "account": acc,
    }


if __name__ == "__main__":
    main()
