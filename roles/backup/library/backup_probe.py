"""Read-only probe of the backup role: repositories, schedule, retention, restore record."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.opsrunner_backup import (
    Restic,
    ResticError,
    latest,
    parse_time,
    read_json,
    tail,
    utcnow,
)

DOCUMENTATION = r"""
---
module: backup_probe
short_description: Judge this host's restic backups against the backup policy
description:
- Opens the local and the off-site restic repository with the password file, lists the role's
  snapshots, runs C(restic check) and a dry-run of the retention policy, and reads the last
  restore-test record. Never changes the host (no repository lock, no cache); safe in check
  mode.
- Returns one verdict per control (C(ok), C(problems), C(data)) and, for BAK-001 and BAK-002,
  the set-up drift that enforce would remediate (C(setup)), all in the audit's single round trip.
- With C(side=target) (delegated to the backup target) it reads only the target's half of the
  off-site route for one client - the account, its private directories, the client's
  authorised key line and the target's SSH host key - and returns it as C(target).
options:
  side:
    type: str
    default: client
    choices: [client, target]
    description: C(client) judges this host's backups; C(target) reads the backup target's side.
  client:
    type: str
    default: ''
    description: Inventory name of the client (its key comment is C(opsrunner-backup@<client>)).
  target_user:
    type: str
    default: ''
    description: Off-site account on the backup target (side=target).
  target_base_dir:
    type: str
    default: ''
    description: Off-site base directory on the backup target (side=target).
  private_dirs:
    type: list
    elements: str
    default: []
    description: Directories that must exist, owned by root and mode 0700 (BAK-001 set-up).
  config_dir:
    type: str
    default: ''
    description: The role's configuration directory (SSH key, known_hosts, ssh_config).
  password_sha1:
    type: str
    default: ''
    description: SHA-1 of the repository secret the controller has; empty when it has none.
  known_hosts:
    type: str
    default: ''
    description: Expected content of the pinned known_hosts file; empty skips the comparison.
  ssh_config:
    type: str
    default: ''
    description: Expected content of the SSH route file.
  target_authorized_line:
    type: str
    default: ''
    description: The line the backup target holds for this client (from side=target).
  password_file:
    type: str
    default: ''
    description: File holding the repository password.
  local_repo:
    type: str
    default: ''
    description: Local repository path.
  offsite_repo:
    type: str
    default: ''
    description: Off-site repository URL (sftp).
  sftp_command:
    type: str
    default: ''
    description: SSH command restic uses for the off-site repository.
  sets:
    type: list
    elements: str
    default: []
    description: Backup set names of this host.
  full_max_age_hours:
    type: float
    default: 0
    description: Oldest acceptable full backup.
  incremental_max_age_hours:
    type: float
    default: 0
    description: Oldest acceptable latest backup of any kind.
  offsite_max_age_hours:
    type: float
    default: 0
    description: Oldest acceptable off-site copy.
  retention:
    type: dict
    default: {}
    description: "Retention counts: keep_daily, keep_weekly, keep_monthly."
  check_read_data_subset:
    type: str
    default: ''
    description: restic check --read-data-subset value; empty reads no data.
  state_dir:
    type: str
    default: ''
    description: The role's state directory on the host.
  restore_max_age_days:
    type: float
    default: 0
    description: Oldest acceptable passed restore test.
  rto_target_minutes:
    type: float
    default: 0
    description: Longest acceptable measured restore time.
  rpo_target_hours:
    type: float
    default: 0
    description: Oldest acceptable snapshot at restore time.
  controls:
    type: list
    elements: str
    default: []
    description: Control ids to evaluate.
author: opsrunner
"""

RETURN = r"""
controls:
  description: Control id to its verdict (ok, problems, evidence, data, error).
  type: dict
  returned: side=client
setup:
  description: "BAK-001 and BAK-002 to the list of set-up differences enforce would remediate."
  type: dict
  returned: side=client
target:
  description: "The target's side: drift (list), authorized_line, host_key."
  type: dict
  returned: side=target
"""


def _verdict(
    problems: list[str], evidence: str, data: dict[str, Any], error: str = ""
) -> dict[str, Any]:
    """One control's verdict; error: it cannot be judged (a repository it needs does not open)."""
    return {
        "ok": not problems and not error,
        "problems": problems,
        "evidence": evidence,
        "data": data,
        "error": error,
    }


def _password_file(path: str) -> list[str]:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return [f"password file {path} is missing"]
    problems = []
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        problems.append(f"password file {path} has mode {mode:04o}, want 0600 (readable by others)")
    if info.st_uid != 0:
        problems.append(f"password file {path} is owned by uid {info.st_uid}, want root")
    if info.st_size == 0:
        problems.append(f"password file {path} is empty")
    return problems


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _owned_file(path: str, uid: int, gid: int, mode: int, kind: str = "file") -> str:
    """Why path is not a kind owned by uid:gid with exactly mode ('' when it is)."""
    try:
        info = os.stat(path)
    except OSError:
        return f"{kind} {path} is missing"
    want_dir = kind == "directory"
    if stat.S_ISDIR(info.st_mode) != want_dir:
        return f"{path} is not a {kind}"
    got = stat.S_IMODE(info.st_mode)
    if got != mode or info.st_uid != uid or info.st_gid != gid:
        return (
            f"{kind} {path} is {info.st_uid}:{info.st_gid} {got:04o}, want {uid}:{gid} {mode:04o}"
        )
    return ""


def _sha1(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha1(handle.read()).hexdigest()  # noqa: S324 - Ansible's copy checksum
    except OSError:
        return None


def _authorized_line(pubkey: str, client: str) -> str:
    """The backup target's line for this client's key: sftp only, nothing else."""
    key = " ".join(pubkey.split()[0:2])
    return f'restrict,command="internal-sftp" {key} opsrunner-backup@{client}'


def _client_setup(p: dict[str, Any], local_ok: bool) -> dict[str, Any]:
    """What enforce's BAK-001 and BAK-002 set-up tasks would change on this host."""
    bak_001: list[str] = []
    if shutil.which("restic") is None:
        bak_001.append("restic is not installed")
    bak_001 += [why for d in p["private_dirs"] if (why := _owned_file(d, 0, 0, 0o700, "directory"))]
    pw = p["password_file"]
    rotate = False
    if os.path.exists(pw):
        why = _owned_file(pw, 0, 0, 0o600)
        if why:
            bak_001.append(why)
        if p["password_sha1"] and _sha1(pw) != p["password_sha1"]:
            # enforce never overwrites the key of a repository that opens: rotate instead
            if local_ok:
                rotate = True
            else:
                bak_001.append(f"password file {pw} differs from the secret given")
    elif p["password_sha1"]:
        bak_001.append(f"password file {pw} is missing")
    if not local_ok:
        bak_001.append(f"local repository {p['local_repo']} is not initialised")

    bak_002: list[str] = []
    cfg = p["config_dir"]
    if cfg:
        why = _owned_file(cfg, 0, 0, 0o700, "directory")
        if why:
            bak_002.append(why)
        pubkey = _read(os.path.join(cfg, "id_ed25519.pub"))
        if not os.path.exists(os.path.join(cfg, "id_ed25519")) or pubkey is None:
            bak_002.append(f"no backup SSH key {cfg}/id_ed25519")
        elif p["target_authorized_line"].strip() != _authorized_line(pubkey, p["client"]):
            bak_002.append("the backup target does not accept this host's key for sftp only")
        for name, want in (("known_hosts", p["known_hosts"]), ("ssh_config", p["ssh_config"])):
            path = os.path.join(cfg, name)
            why = _owned_file(path, 0, 0, 0o600)
            if why:
                bak_002.append(why)
            elif want and (_read(path) or "").rstrip("\n") != want.rstrip("\n"):
                bak_002.append(f"{path} differs from the policy")
    return {"BAK-001": bak_001, "BAK-002": bak_002, "rotate": rotate}


def _target_side(p: dict[str, Any]) -> dict[str, Any]:
    """The backup target's half of one client's off-site route, read only."""
    drift: list[str] = []
    user, base = p["target_user"], p["target_base_dir"]
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        account = None
        drift.append(f"off-site account {user} is missing")
    if account is not None:
        if account.pw_dir != base or account.pw_shell != "/usr/sbin/nologin":
            drift.append(f"off-site account {user}: home {account.pw_dir}, {account.pw_shell}")
        for d in (base, f"{base}/.ssh", f"{base}/{p['client']}"):
            why = _owned_file(d, account.pw_uid, account.pw_gid, 0o700, "directory")
            if why:
                drift.append(why)
    keys = f"{base}/.ssh/authorized_keys"
    text = _read(keys)
    suffix = f" opsrunner-backup@{p['client']}"
    line = next((ln for ln in (text or "").splitlines() if ln.endswith(suffix)), "")
    if account is not None and text is not None:
        why = _owned_file(keys, account.pw_uid, account.pw_gid, 0o600)
        if why:
            drift.append(why)
    host_key = " ".join((_read("/etc/ssh/ssh_host_ed25519_key.pub") or "").split()[0:2])
    return {"drift": drift, "authorized_line": line, "host_key": host_key}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "side": {"type": "str", "default": "client", "choices": ["client", "target"]},
            "client": {"type": "str", "default": ""},
            "target_user": {"type": "str", "default": ""},
            "target_base_dir": {"type": "str", "default": ""},
            "private_dirs": {"type": "list", "elements": "str", "default": []},
            "config_dir": {"type": "str", "default": ""},
            "password_sha1": {"type": "str", "default": "", "no_log": True},
            "known_hosts": {"type": "str", "default": ""},
            "ssh_config": {"type": "str", "default": ""},
            "target_authorized_line": {"type": "str", "default": ""},
            "password_file": {"type": "str", "default": "", "no_log": False},
            "local_repo": {"type": "str", "default": ""},
            "offsite_repo": {"type": "str", "default": ""},
            "sftp_command": {"type": "str", "default": ""},
            "sets": {"type": "list", "elements": "str", "default": []},
            "full_max_age_hours": {"type": "float", "default": 0},
            "incremental_max_age_hours": {"type": "float", "default": 0},
            "offsite_max_age_hours": {"type": "float", "default": 0},
            "retention": {"type": "dict", "default": {}},
            "check_read_data_subset": {"type": "str", "default": ""},
            "state_dir": {"type": "str", "default": ""},
            "restore_max_age_days": {"type": "float", "default": 0},
            "rto_target_minutes": {"type": "float", "default": 0},
            "rpo_target_hours": {"type": "float", "default": 0},
            "controls": {"type": "list", "elements": "str", "default": []},
        },
        required_if=[
            ("side", "target", ("client", "target_user", "target_base_dir")),
            ("side", "client", ("password_file", "local_repo", "offsite_repo", "sftp_command")),
        ],
        supports_check_mode=True,
    )
    p = module.params
    if p["side"] == "target":
        module.exit_json(changed=False, target=_target_side(p), error="")
    wanted = set(p["controls"])
    now = utcnow()
    restic = Restic(module, p["password_file"], p["sftp_command"])
    local, offsite = p["local_repo"], p["offsite_repo"]
    out: dict[str, Any] = {}

    pw_problems = _password_file(p["password_file"])
    if module.get_bin_path("restic") is None:
        local_ok, local_err = False, "restic is not installed"
    elif not os.path.exists(p["password_file"]):
        local_ok, local_err = False, "no password file"
    else:
        local_ok, local_err = restic.initialized(local)
    if "BAK-001" in wanted:
        problems = list(pw_problems)
        if not local_ok:
            problems.append(
                f"local repository {local} does not open with the password: {local_err}"
            )
        out["BAK-001"] = _verdict(
            problems,
            f"local repository {local} "
            + ("opens, encrypted (its config reads only with the key)" if local_ok else "unusable"),
            {"repository": local, "initialized": local_ok},
        )

    need_offsite = bool(wanted & {"BAK-002", "BAK-004", "BAK-005"})
    offsite_ok, offsite_err = (False, "not probed")
    if need_offsite:
        offsite_ok, offsite_err = (
            restic.initialized(offsite) if local_ok else (False, "local repository unusable")
        )
    if "BAK-002" in wanted:
        problems = (
            []
            if offsite_ok
            else [f"off-site repository {offsite} not reachable or not initialised: {offsite_err}"]
        )
        out["BAK-002"] = _verdict(
            problems,
            f"off-site repository {offsite} "
            + ("reachable over SSH and opens" if offsite_ok else "unusable"),
            {"repository": offsite, "initialized": offsite_ok},
        )

    local_snaps: list[dict[str, Any]] = []
    offsite_snaps: list[dict[str, Any]] = []
    snap_error = ""
    try:
        if local_ok and wanted & {"BAK-003", "BAK-004", "BAK-006"}:
            local_snaps = restic.snapshots(local, now)
        if offsite_ok and "BAK-004" in wanted:
            offsite_snaps = restic.snapshots(offsite, now)
    except ResticError as exc:
        snap_error = str(exc)

    if "BAK-003" in wanted:
        problems, per_set = [], {}
        if not local_ok:
            problems.append("local repository unusable: no backup can be judged")
        for name in p["sets"]:
            full, last = latest(local_snaps, name, "full"), latest(local_snaps, name)
            incr = latest(local_snaps, name, "incremental")
            per_set[name] = {
                "last_full": full and {k: full[k] for k in ("short_id", "time", "age_hours")},
                "last_incremental": incr
                and {k: incr[k] for k in ("short_id", "time", "age_hours")},
                "last_any_age_hours": last and last["age_hours"],
            }
            if full is None:
                problems.append(f"set {name}: no full backup")
            elif full["age_hours"] > p["full_max_age_hours"]:
                problems.append(
                    f"set {name}: last full backup {full['age_hours']:.1f} h old"
                    f" > {p['full_max_age_hours']} h"
                )
            if last is None:
                pass
            elif last["age_hours"] > p["incremental_max_age_hours"]:
                problems.append(
                    f"set {name}: last backup {last['age_hours']:.1f} h old"
                    f" > {p['incremental_max_age_hours']} h"
                )
        if snap_error:
            problems.append(snap_error)
        text = "; ".join(
            f"{n}: full {s['last_full']['age_hours'] if s['last_full'] else '-'} h, "
            f"incremental {s['last_incremental']['age_hours'] if s['last_incremental'] else '-'} h"
            for n, s in per_set.items()
        )
        out["BAK-003"] = _verdict(problems, f"backup ages per set: {text}", {"sets": per_set})

    if "BAK-004" in wanted:
        problems, per_set = [], {}
        unjudged = (
            ""
            if offsite_ok
            else f"off-site repository {offsite} does not open ({offsite_err}): see BAK-002"
        )
        copied = {s["original"] for s in offsite_snaps if s["original"]}
        for name in p["sets"]:
            last_local, last_off = latest(local_snaps, name), latest(offsite_snaps, name)
            per_set[name] = {
                "latest_local": last_local and last_local["short_id"],
                "offsite_latest": last_off
                and {k: last_off[k] for k in ("short_id", "time", "age_hours", "original")},
            }
            if last_off is None:
                problems.append(f"set {name}: no off-site copy")
                continue
            if last_off["age_hours"] > p["offsite_max_age_hours"]:
                problems.append(
                    f"set {name}: off-site copy {last_off['age_hours']:.1f} h old"
                    f" > {p['offsite_max_age_hours']} h"
                )
            if last_local and last_local["id"] not in copied:
                problems.append(
                    f"set {name}: latest snapshot {last_local['short_id']}"
                    f" ({last_local['time']}) has no off-site copy"
                )
        if snap_error:
            problems.append(snap_error)
        ages = ", ".join(
            f"{n}: {s['offsite_latest']['age_hours'] if s['offsite_latest'] else '-'} h"
            for n, s in per_set.items()
        )
        out["BAK-004"] = _verdict(
            problems if offsite_ok else [],
            f"off-site copy age per set: {ages}",
            {"sets": per_set},
            unjudged,
        )

    if "BAK-005" in wanted:
        problems, checks, unchecked = [], {}, []
        for label, repo, usable in (("local", local, local_ok), ("offsite", offsite, offsite_ok)):
            if not usable:
                unchecked.append(f"{label} repository {repo} cannot be checked: it does not open")
                continue
            args = ["check", "--no-lock"]
            if p["check_read_data_subset"]:
                args.append(f"--read-data-subset={p['check_read_data_subset']}")
            rc, stdout, stderr = restic.run(repo, *args)
            checks[label] = {
                "repository": repo,
                "rc": rc,
                "output": tail(stdout + "\n" + stderr, 8),
            }
            if rc != 0:
                problems.append(
                    f"restic check of {label} repository {repo} failed (rc {rc}): "
                    f"{tail(stdout + chr(10) + stderr, 4)}"
                )
        out["BAK-005"] = _verdict(
            problems,
            "; ".join(
                f"{k}: {'no errors' if v['rc'] == 0 else 'errors'}" for k, v in checks.items()
            )
            or "not checked",
            {"checks": checks, "read_data_subset": p["check_read_data_subset"]},
            "" if problems else "; ".join(unchecked),
        )

    if "BAK-006" in wanted:
        problems, remove = [], []
        r = p["retention"]
        if local_ok:
            rc, stdout, stderr = restic.run(
                local,
                "forget",
                "--dry-run",
                "--json",
                "--no-lock",
                "--tag",
                "opsrunner",
                "--group-by",
                "host,tags",
                "--keep-daily",
                str(r.get("keep_daily", 7)),
                "--keep-weekly",
                str(r.get("keep_weekly", 4)),
                "--keep-monthly",
                str(r.get("keep_monthly", 6)),
            )
            if rc != 0:
                problems.append(f"restic forget --dry-run failed: {tail(stderr, 3)}")
            else:
                for group in json.loads(stdout or "[]") or []:
                    for snap in group.get("remove") or []:
                        when = parse_time(snap["time"])
                        remove.append(
                            {
                                "short_id": snap.get("short_id", ""),
                                "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                "tags": snap.get("tags", []),
                            }
                        )
            if remove:
                problems.append(
                    f"{len(remove)} snapshot(s) kept beyond the retention policy: "
                    + ", ".join(f"{s['short_id']} ({s['time']})" for s in remove[:10])
                )
        else:
            problems.append("local repository unusable: retention cannot be judged")
        out["BAK-006"] = _verdict(
            problems,
            f"retention daily {r.get('keep_daily')}, weekly {r.get('keep_weekly')},"
            f" monthly {r.get('keep_monthly')}: "
            f"{len(local_snaps)} snapshot(s), {len(remove)} beyond policy",
            {"retention": r, "snapshots": len(local_snaps), "beyond_policy": remove},
        )

    if "BAK-007" in wanted:
        record_path = os.path.join(p["state_dir"], "restore-test.json")
        record = read_json(record_path)
        problems = []
        data: dict[str, Any] = {"record": record_path}
        if not isinstance(record, dict):
            problems.append(
                f"no restore test on record ({record_path} missing): run the restore_test job"
            )
            evidence = "no restore test on record"
        else:
            when = parse_time(str(record.get("finished_at", "1970-01-01T00:00:00Z")))
            age_days = (now - when).total_seconds() / 86400.0
            data.update(
                {
                    k: record.get(k)
                    for k in ("status", "finished_at", "rto_seconds", "rpo_seconds", "sets")
                }
            )
            data["age_days"] = round(age_days, 3)
            if record.get("status") != "passed":
                problems.append(
                    f"last restore test {record.get('finished_at')} failed: "
                    + "; ".join(record.get("problems", []))[:400]
                )
            if age_days > p["restore_max_age_days"]:
                problems.append(
                    f"last restore test is {age_days:.1f} days old > {p['restore_max_age_days']}"
                )
            rto, rpo = float(record.get("rto_seconds") or 0), float(record.get("rpo_seconds") or 0)
            if rto > p["rto_target_minutes"] * 60:
                problems.append(f"measured RTO {rto:.1f} s > target {p['rto_target_minutes']} min")
            if rpo > p["rpo_target_hours"] * 3600:
                problems.append(f"measured RPO {rpo:.0f} s > target {p['rpo_target_hours']} h")
            evidence = (
                f"restore test {record.get('status')} at {record.get('finished_at')}:"
                f" RTO {rto:.1f} s, RPO {rpo:.0f} s"
            )
        out["BAK-007"] = _verdict(problems, evidence, data)

    module.exit_json(changed=False, controls=out, setup=_client_setup(p, local_ok), error="")


if __name__ == "__main__":
    main()
