"""Documentation for the opsrunner.compliance.control action (code: plugins/action/control.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: control
short_description: Report one control result for the current host (the result contract)
description: See plugins/action/control.py and docs/result-contract.md. Runs on the controller only.
options:
  id: {description: Control id., required: true, type: str}
  passed: {description: Verdict., type: bool}
  drift: {description: Enforcing task changed., type: bool}
  error: {description: Why the check broke., type: str}
  applicable: {description: Applies to this host., type: bool}
  evidence: {description: Short text., type: str}
  data: {description: Structured evidence., type: dict}
  reason: {description: Why fail/notapplicable., type: str}
author: [opsrunner]
"""
EXAMPLES = r"""
- name: "FW-001 | Report the input chain policy"
  opsrunner.compliance.control:
    id: FW-001
    passed: "{{ __firewall_policy == 'drop' }}"
    evidence: "input chain policy is {{ __firewall_policy }}"
"""
RETURN = r"""
opsrunner_control: {description: The control result., returned: always, type: dict}
"""
