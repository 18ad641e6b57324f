"""Operate-mode jobs of the backup role: a full or incremental backup, or a restore drill."""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.opsrunner_backup import (
    TAG_ROLE,
    Restic,
    ResticError,
    build_manifest,
    iso,
    latest,
    parse_time,
    read_json,
    read_manifest,
    sha256_file,
    tail,
    utcnow,
    write_json,
    write_manifest,
)

DOCUMENTATION = r"""
---
module: backup_job
short_description: Take a restic backup of the host's sets, or restore-test the latest snapshots
description:
- C(action=backup) runs each set's pre-hook, writes a sha256 manifest of the set's files (kept
  inside the snapshot), takes a full (C(--force), every file re-read, no parent) or incremental
  (parent snapshot, unchanged files skipped) backup, applies the retention policy, and copies
  the new snapshots to the off-site repository.
- C(action=restore_test) restores the snapshot recorded by the last backup of each set into
  a scratch directory, verifies every file against the manifest taken at backup time, runs C(restic
  check --read-data), and records the measured restore time (RTO) and snapshot age (RPO).
- Not for check mode (it changes the host on purpose: operate mode).
options:
  action:
    type: str
    required: true
    choices:
    - backup
    - restore_test
    description: Which job.
  password_file:
    type: str
    required: true
    description: File holding the repository password.
  local_repo:
    type: str
    required: true
    description: Local repository path.
  offsite_repo:
    type: str
    required: true
    description: Off-site repository URL (sftp).
  sftp_command:
    type: str
    required: true
    description: SSH command restic uses for the off-site repository.
  cache_dir:
    type: str
    default: ''
    description: restic cache directory.
  hostname:
    type: str
    required: true
    description: Host name recorded in snapshots.
  sets:
    type: list
    elements: dict
    required: true
    description: "Backup sets, each with name, paths and pre_hook."
  kind:
    type: str
    default: auto
    choices:
    - auto
    - full
    - incremental
    description: Backup kind; auto follows the schedule.
  full_interval_hours:
    type: float
    default: 168
    description: A full backup is due when the last one is this old.
  retention:
    type: dict
    default: {}
    description: "Retention counts: keep_daily, keep_weekly, keep_monthly."
  offsite:
    type: bool
    default: true
    description: Copy new snapshots off-site.
  state_dir:
    type: str
    required: true
    description: The role's state directory on the host.
  scratch_dir:
    type: str
    default: /var/tmp/opsrunner-restore
    description: Where the drill restores.
  keep_scratch:
    type: bool
    default: false
    description: Leave the restored files for inspection.
author: opsrunner
"""

RETURN = r"""
sets:
  description: Per set what was done (snapshot
  kind: null
  restic summary: null
  or drill result).: null
  type: dict
  returned: always
problems:
  description: Why the job failed
  one line per problem.: null
  type: list
  returned: always
record:
  description: The restore-test record written to the state directory.
  type: dict
  returned: restore_test
"""


def _retention_args(retention: dict[str, Any]) -> list[str]:
    args = ["--tag", TAG_ROLE, "--group-by", "host,tags"]
    for key in ("keep_daily", "keep_weekly", "keep_monthly"):
        if retention.get(key) is not None:
            args += [f"--{key.replace('_', '-')}", str(int(retention[key]))]
    return args


def _backup(module: AnsibleModule, restic: Restic) -> tuple[dict[str, Any], list[str]]:
    p = module.params
    now = utcnow()
    done: dict[str, Any] = {}
    problems: list[str] = []
    try:
        snaps = restic.snapshots(p["local_repo"], now)
    except ResticError as exc:
        return done, [str(exc)]
    for spec in p["sets"]:
        name = str(spec["name"])
        paths = [str(x) for x in spec.get("paths") or []]
        hook = str(spec.get("pre_hook") or "")
        if hook:
            rc, out, err = module.run_command(hook, use_unsafe_shell=True)
            if rc != 0:
                problems.append(
                    f"set {name}: pre-hook failed (rc {rc}): {tail(out + chr(10) + err, 3)}"
                )
                continue
        missing = [x for x in paths if not os.path.exists(x)]
        if missing or not paths:
            problems.append(f"set {name}: paths missing: {', '.join(missing) or 'none configured'}")
            continue
        manifest_path = os.path.join(p["state_dir"], "manifests", f"{name}.sha256")
        entries = build_manifest(paths)
        manifest_sha = write_manifest(manifest_path, entries)
        kind = p["kind"]
        if kind == "auto":
            full = latest(snaps, name, "full")
            kind = (
                "full"
                if full is None or full["age_hours"] >= p["full_interval_hours"]
                else "incremental"
            )
        args = [
            "backup",
            "--json",
            "--host",
            p["hostname"],
            "--tag",
            TAG_ROLE,
            "--tag",
            f"set:{name}",
            "--tag",
            f"kind:{kind}",
        ]
        if kind == "full":
            # restic deduplicates either way; "full" means no parent and every file re-read.
            args.append("--force")
        rc, out, err = restic.run(p["local_repo"], *args, *paths, manifest_path)
        summary: dict[str, Any] = {}
        for line in out.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and item.get("message_type") == "summary":
                summary = item
        if rc != 0 or not summary.get("snapshot_id"):
            problems.append(f"set {name}: restic backup failed (rc {rc}): {tail(err, 4)}")
            continue
        snapshot_id = str(summary["snapshot_id"])
        state = {
            "set": name,
            "kind": kind,
            "snapshot_id": snapshot_id,
            "finished_at": iso(utcnow()),
            "paths": paths,
            "manifest": manifest_path,
            "manifest_sha256": manifest_sha,
            "manifest_files": len(entries),
            "summary": {k: v for k, v in summary.items() if k != "message_type"},
        }
        write_json(os.path.join(p["state_dir"], "sets", f"{name}.json"), state)
        done[name] = state
    if p["retention"]:
        rc, _out, err = restic.run(
            p["local_repo"], "forget", "--prune", *_retention_args(p["retention"])
        )
        if rc != 0:
            problems.append(f"retention on the local repository failed: {tail(err, 3)}")
    if p["offsite"]:
        rc, _out, err = restic.run(
            p["offsite_repo"],
            "copy",
            "--from-repo",
            p["local_repo"],
            "--from-password-file",
            p["password_file"],
            "--tag",
            TAG_ROLE,
        )
        if rc != 0:
            problems.append(f"off-site copy to {p['offsite_repo']} failed: {tail(err, 3)}")
        elif p["retention"]:
            rc, _out, err = restic.run(
                p["offsite_repo"], "forget", "--prune", *_retention_args(p["retention"])
            )
            if rc != 0:
                problems.append(f"retention on the off-site repository failed: {tail(err, 3)}")
    return done, problems


def _verify(root: str, manifest: list[tuple[str, str]]) -> list[str]:
    bad: list[str] = []
    for digest, name in manifest:
        target = os.path.join(root, name.lstrip("/"))
        if not os.path.isfile(target):
            bad.append(f"{name}: missing after restore")
        elif sha256_file(target) != digest:
            bad.append(f"{name}: checksum differs from the backup-time manifest")
    return bad


def _restore_test(
    module: AnsibleModule, restic: Restic
) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    p = module.params
    started = utcnow()
    results: dict[str, Any] = {}
    problems: list[str] = []
    rto_total = 0.0
    rpo_max = 0.0
    try:
        snaps = {s["id"]: s for s in restic.snapshots(p["local_repo"], started)}
    except ResticError as exc:
        snaps, problems = {}, [str(exc)]
    for spec in p["sets"]:
        name = str(spec["name"])
        state = read_json(os.path.join(p["state_dir"], "sets", f"{name}.json"))
        if not isinstance(state, dict):
            problems.append(f"set {name}: no backup on record to restore")
            continue
        sid = str(state["snapshot_id"])
        match = [s for full_id, s in snaps.items() if full_id.startswith(sid)]
        if not match:
            problems.append(
                f"set {name}: snapshot {sid[:8]} taken by the backup of {state.get('finished_at')} "
                f"is missing from the repository (deleted snapshot)"
            )
            continue
        snap = match[0]
        target = os.path.join(p["scratch_dir"], name)
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target, mode=0o700, exist_ok=True)
        t0 = time.monotonic()
        rc, out, err = restic.run(p["local_repo"], "restore", snap["id"], "--target", target)
        set_problems: list[str] = []
        if rc != 0:
            set_problems.append(
                f"set {name}: restic restore of {snap['short_id']} failed (rc {rc}): {tail(err, 4)}"
            )
        restored_manifest = os.path.join(target, str(state["manifest"]).lstrip("/"))
        verified = 0
        if not os.path.isfile(restored_manifest):
            set_problems.append(
                f"set {name}: the backup-time manifest is missing from the restored snapshot"
            )
        elif sha256_file(restored_manifest) != state.get("manifest_sha256"):
            set_problems.append(
                f"set {name}: the restored manifest differs from the one recorded at backup time"
            )
        else:
            manifest = read_manifest(restored_manifest)
            bad = _verify(target, manifest)
            verified = len(manifest) - len(bad)
            if bad:
                set_problems.append(
                    f"set {name}: {len(bad)} of {len(manifest)} file(s) failed verification: "
                    + "; ".join(bad[:5])
                )
        rto = time.monotonic() - t0
        rpo = (started - parse_time(snap["time"])).total_seconds()
        rto_total += rto
        rpo_max = max(rpo_max, rpo)
        results[name] = {
            "snapshot": snap["short_id"],
            "snapshot_time": snap["time"],
            "kind": snap["kind"],
            "files_verified": verified,
            "rto_seconds": round(rto, 3),
            "rpo_seconds": round(rpo, 1),
            "problems": set_problems,
        }
        problems += set_problems
        if not p["keep_scratch"]:
            shutil.rmtree(target, ignore_errors=True)
    rc, out, err = restic.run(p["local_repo"], "check", "--read-data")
    check = {"rc": rc, "output": tail(out + "\n" + err, 8)}
    if rc != 0:
        problems.append(
            f"restic check --read-data of {p['local_repo']} failed (rc {rc}): "
            f"{tail(out + chr(10) + err, 4)}"
        )
    record = {
        "status": "passed" if not problems else "failed",
        "started_at": iso(started),
        "finished_at": iso(utcnow()),
        "repository": p["local_repo"],
        "rto_seconds": round(rto_total, 3),
        "rpo_seconds": round(rpo_max, 1),
        "sets": results,
        "check": check,
        "problems": problems,
    }
    write_json(os.path.join(p["state_dir"], "restore-test.json"), record)
    return results, problems, record


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": ["backup", "restore_test"]},
            "password_file": {"type": "str", "required": True, "no_log": False},
            "local_repo": {"type": "str", "required": True},
            "offsite_repo": {"type": "str", "required": True},
            "sftp_command": {"type": "str", "required": True},
            "cache_dir": {"type": "str", "default": ""},
            "hostname": {"type": "str", "required": True},
            "sets": {"type": "list", "elements": "dict", "required": True},
            "kind": {"type": "str", "default": "auto", "choices": ["auto", "full", "incremental"]},
            "full_interval_hours": {"type": "float", "default": 168.0},
            "retention": {"type": "dict", "default": {}},
            "offsite": {"type": "bool", "default": True},
            "state_dir": {"type": "str", "required": True},
            "scratch_dir": {"type": "str", "default": "/var/tmp/opsrunner-restore"},  # noqa: S108 -- a root-only scratch dir the drill empties
            "keep_scratch": {"type": "bool", "default": False},
        },
        supports_check_mode=False,
    )
    p = module.params
    restic = Restic(module, p["password_file"], p["sftp_command"], p["cache_dir"])
    if p["action"] == "backup":
        done, problems = _backup(module, restic)
        module.exit_json(changed=bool(done), sets=done, problems=problems)
    results, problems, record = _restore_test(module, restic)
    module.exit_json(changed=True, sets=results, problems=problems, record=record)


if __name__ == "__main__":
    main()
