"""Collect control results (the result contract), print a per-host summary, write a results file."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import tempfile

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
---
name: opsrunner_results
type: notification
short_description: Per-host control summary and results file for opsrunner controls
description:
  - Reads the opsrunner_control key that opsrunner.compliance.control returns
    (see docs/result-contract.md), prints a per-host control summary at the end
    of the play and writes all results as JSON.
  - A task that fails unexpectedly and whose name starts with a control id
    ("FW-001 | ...") is recorded as status error for that control, with the
    failure message as reason. An unreachable host is recorded as unreachable;
    opsrunner turns that into status unknown for every control in scope.
  - The results file goes to OPSRUNNER_RESULTS_FILE if set, otherwise to
    OPSRUNNER_RESULTS_DIR (default .opsrunner/results) as <UTC time>-<playbook>.json.
requirements: [enable in ansible.cfg callbacks_enabled]
"""

CONTROL_ID = re.compile(r"^\s*([A-Z][A-Z0-9]{1,7}-\d{3})\s*\|")
# Worst status wins when several tasks report parts of one control on one host.
_RANK = {"notapplicable": 0, "pass": 1, "fail": 2, "error": 3}


def _joined(values) -> str:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    for value in values:
        value = value.strip()
        if value and value not in seen:
            seen.append(value)
    return "; ".join(seen)


def _utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class CallbackModule(CallbackBase):
    """Aggregate opsrunner_control results per host and control."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "opsrunner_results"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.hosts: dict[str, dict] = {}
        self.playbook = ""
        self.started = _utcnow()
        self.check_mode = False
        self.pending: dict[str, dict[str, tuple[dict, str]]] = {}

    # -- helpers ---------------------------------------------------------
    def _host(self, name: str) -> dict:
        return self.hosts.setdefault(name, {"reachable": True, "reason": "", "controls": {}})

    def _record(self, host: str, control: dict, task: str) -> None:
        controls = self._host(host)["controls"]
        cid = control["id"]
        entry = dict(control, task=task, at=_utcnow())
        previous = controls.get(cid)
        if previous is None:
            entry["checks"] = [dict(entry)]
            controls[cid] = entry
            return
        previous["checks"].append(entry)
        if _RANK.get(entry["status"], 3) > _RANK.get(previous["status"], 3):
            for key in ("status", "evidence", "reason", "data", "task", "remediated"):
                previous[key] = entry.get(key)
        elif entry["status"] == previous["status"] and entry.get("evidence"):
            previous["evidence"] = "; ".join(
                e for e in (previous.get("evidence"), entry["evidence"]) if e
            )
        if previous["status"] in ("fail", "error"):
            # Every finding's reason and evidence, failures first (docs/result-contract.md).
            found = [c for s in ("fail", "error") for c in previous["checks"] if c["status"] == s]
            for key in ("reason", "evidence"):
                previous[key] = _joined(str(c.get(key) or "") for c in found)
        previous["remediated"] = bool(previous.get("remediated")) or bool(entry.get("remediated"))

    def _from_result(self, result, failed: bool = False) -> None:  # type: ignore[no-untyped-def]
        host = result._host.get_name()
        # get_name() prefixes role tasks with "role : "; the control id starts the task's own name.
        task = str(getattr(result._task, "name", "") or result._task.get_name())
        res = result._result
        found = False
        for item in [res, *(res.get("results") or [])]:
            if isinstance(item, dict) and isinstance(item.get("opsrunner_control"), dict):
                self._record(host, item["opsrunner_control"], task)
                found = True
                # A report for this control supersedes a failure that its rescue handled.
                self.pending.get(host, {}).pop(item["opsrunner_control"].get("id"), None)
        if failed and not found:
            match = CONTROL_ID.match(task)
            if match:
                message = str(res.get("msg") or res.get("stderr") or "task failed")[:500]
                # Provisional: the callback cannot tell yet whether a rescue will report this
                # control; if none does by the end of the play, the failure stands as error.
                self.pending.setdefault(host, {})[match.group(1)] = (
                    {
                        "id": match.group(1),
                        "status": "error",
                        "evidence": "",
                        "data": {},
                        "reason": f"task '{task}' failed: {message}",
                        "remediated": False,
                    },
                    task,
                )

    def _settle(self) -> None:
        for host, entries in self.pending.items():
            for control, task in entries.values():
                self._record(host, control, task)
        self.pending = {}

    # -- Ansible events --------------------------------------------------
    def v2_playbook_on_start(self, playbook) -> None:  # type: ignore[no-untyped-def]
        self.playbook = os.path.basename(playbook._file_name)
        self.started = _utcnow()

    def v2_playbook_on_play_start(self, play) -> None:  # type: ignore[no-untyped-def]
        self.check_mode = bool(play.check_mode) or self.check_mode
        for host in play.get_variable_manager()._inventory.get_hosts(play.hosts):
            self._host(host.get_name())

    def v2_runner_on_ok(self, result) -> None:  # type: ignore[no-untyped-def]
        self._from_result(result)

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:  # type: ignore[no-untyped-def]
        # An ignored failure of a probe is the role's business: it reports through the contract.
        self._from_result(result, failed=not ignore_errors)

    def v2_runner_on_unreachable(self, result) -> None:  # type: ignore[no-untyped-def]
        entry = self._host(result._host.get_name())
        entry["reachable"] = False
        entry["reason"] = str(result._result.get("msg") or "unreachable")[:500]

    def v2_playbook_on_stats(self, stats) -> None:  # type: ignore[no-untyped-def]
        from ansible import context

        self._settle()
        self.check_mode = self.check_mode or bool(context.CLIARGS.get("check", False))
        payload = {
            "format": "opsrunner-results/1",
            "playbook": self.playbook,
            "started": self.started,
            "ended": _utcnow(),
            "mode": "audit" if self.check_mode else "enforce",
            "hosts": self.hosts,
            "stats": {h: stats.summarize(h) for h in sorted(stats.processed)},
        }
        self._print_summary()
        self._write(payload)

    # -- output ----------------------------------------------------------
    def _print_summary(self) -> None:
        if not self.hosts:
            return
        self._display.banner("OPSRUNNER CONTROL SUMMARY")
        for host in sorted(self.hosts):
            entry = self.hosts[host]
            if not entry["reachable"]:
                self._display.display(f"{host}: UNREACHABLE — {entry['reason']}", color="red")
                continue
            counts: dict[str, int] = {}
            for control in entry["controls"].values():
                counts[control["status"]] = counts.get(control["status"], 0) + 1
            summary = " ".join(
                f"{k}={counts[k]}"
                for k in ("pass", "fail", "error", "notapplicable")
                if k in counts
            )
            color = "red" if counts.get("fail") or counts.get("error") else "green"
            self._display.display(f"{host}: {summary or 'no controls reported'}", color=color)
            for cid in sorted(entry["controls"]):
                control = entry["controls"][cid]
                if control["status"] in ("fail", "error"):
                    why = control.get("reason") or control.get("evidence")
                    self._display.display(f"  {cid} {control['status'].upper()}: {why}")

    def _write(self, payload: dict) -> None:
        target = os.environ.get("OPSRUNNER_RESULTS_FILE")
        if not target:
            directory = os.environ.get(
                "OPSRUNNER_RESULTS_DIR", os.path.join(".opsrunner", "results")
            )
            stamp = payload["ended"].replace(":", "").replace("-", "")
            target = os.path.join(
                directory, f"{stamp}-{os.path.splitext(self.playbook)[0] or 'play'}.json"
            )
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        # Write to a temporary file and rename, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(target)), suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        os.replace(tmp, target)
        self._display.display(f"opsrunner results: {target}")
