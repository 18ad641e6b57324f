"""Result contract: report one control's status for one host (opsrunner.compliance.control)."""

from __future__ import annotations

import hashlib

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DOCUMENTATION = r"""
---
module: control
short_description: Report one control result for the current host (the result contract)
description:
  - Runs on the controller only; never touches the host and never fails, so a
    failing control cannot abort the other controls on that host.
  - The result is returned under the key C(opsrunner_control), which the
    opsrunner_results callback and opsrunner's event handler read.
  - Status is computed in this order, C(error) non-empty gives C(error);
    C(applicable=false) gives C(notapplicable); C(passed) or C(drift) decide
    between C(pass) and C(fail).
  - C(drift) is the C(changed) flag of the task that enforces the control. In
    check mode (audit) drift means the host is not compliant (C(fail)); in
    enforce mode it means the task remediated the host (C(pass), C(remediated=true)).
options:
  id: {description: "Control id from the policy, e.g. FW-001.", required: true, type: str}
  passed: {description: The check's verdict. Exclusive with drift., type: bool}
  drift:
    description: Whether the enforcing task reported a change. Exclusive with passed.
    type: bool
  error:
    description: Why the check itself broke; non-empty means status error.
    type: str
    default: ""
  applicable:
    description: False when the control does not apply to this host.
    type: bool
    default: true
  evidence: {description: Short human text saying what was observed., type: str, default: ""}
  data: {description: Structured evidence (JSON-serialisable)., type: dict, default: {}}
  reason: {description: Why the control fails or does not apply., type: str, default: ""}
"""

_STATUSES = ("pass", "fail", "error", "notapplicable")
_EVIDENCE_MAX = 2000


def _as_bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (
        "true",
        "yes",
        "1",
        "false",
        "no",
        "0",
        "",
    ):
        return value.strip().lower() in ("true", "yes", "1")
    if isinstance(value, int):
        return bool(value)
    raise AnsibleActionFail(
        f"opsrunner.compliance.control: {name} must be a boolean, got {value!r}"
    )


class ActionModule(ActionBase):
    """Compute a control status and return it as opsrunner_control."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(
        ("id", "passed", "drift", "error", "applicable", "evidence", "data", "reason")
    )
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):  # type: ignore[no-untyped-def]
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        control_id = str(args.get("id", "")).strip()
        if not control_id:
            raise AnsibleActionFail("opsrunner.compliance.control: 'id' is required")
        if (
            ("passed" in args) == ("drift" in args)
            and not args.get("error")
            and args.get("applicable", True) not in (False, "false", "False", "no")
        ):
            raise AnsibleActionFail(
                f"opsrunner.compliance.control {control_id}: "
                "give exactly one of 'passed' or 'drift'"
            )
        check_mode = bool(self._task.check_mode) or bool(
            (task_vars or {}).get("ansible_check_mode")
        )
        error = str(args.get("error") or "").strip()
        applicable = _as_bool(args.get("applicable", True), "applicable")
        remediated = False
        if error:
            status = "error"
        elif not applicable:
            status = "notapplicable"
        elif "drift" in args:
            drift = _as_bool(args["drift"], "drift")
            status = "fail" if (drift and check_mode) else "pass"
            remediated = drift and not check_mode
        else:
            status = "pass" if _as_bool(args["passed"], "passed") else "fail"
        data = args.get("data") or {}
        if not isinstance(data, dict):
            raise AnsibleActionFail(
                f"opsrunner.compliance.control {control_id}: data must be a dict"
            )
        evidence = str(args.get("evidence") or "")
        # An error names why the check broke; the fail reason a role templated does not apply.
        reason = error if status == "error" else str(args.get("reason") or "")
        if status == "pass":
            reason = "remediated in this run" if remediated else ""
        elif status == "fail" and not reason:
            reason = (
                "the host differs from the desired state" if "drift" in args else "check failed"
            )
        report = {
            "id": control_id,
            "status": status,
            "evidence": evidence[:_EVIDENCE_MAX],
            "evidence_truncated": len(evidence) > _EVIDENCE_MAX,
            "data": data,
            "reason": reason,
            "remediated": remediated,
            "mode": "audit" if check_mode else "enforce",
        }
        if len(evidence) > _EVIDENCE_MAX:
            # Only the head travels on; the hash and size of the whole stay with the result.
            whole = evidence.encode("utf-8", "surrogatepass")
            report["evidence_full_sha256"] = hashlib.sha256(whole).hexdigest()
            report["evidence_full_bytes"] = len(whole)
        result.update(
            changed=False,
            failed=False,
            opsrunner_control=report,
            msg=f"{control_id}: {status}" + (f" ({reason})" if reason else ""),
        )
        return result
