"""Emergency management, attested controls and the period assessment (chapters 5 to 7)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from opsrunner.emergency.attest import AttestError
from opsrunner.emergency.attest import attest as _attest
from opsrunner.paths import project_root
from opsrunner.policy.loader import Policy, load_policy

#: Evidence files the demo attests with (real-looking records of a quarter).
DEMO_EVIDENCE = project_root() / "evidence" / "demo"
#: (control, attester, evidence file) the demo attests.
DEMO_ATTESTATIONS = (
    ("TRN-003", "erin", "training-record-2026Q4.md"),
    ("EMG-001", "dave", "plan-review-minutes-2026-10-15.md"),
    ("SUP-001", "erin", "support-channels-2026.md"),
)

__all__ = ["DEMO_ATTESTATIONS", "DEMO_EVIDENCE", "AttestError", "attest_demo"]


def attest_demo(policy: Policy, state_dir: Path, now: dt.datetime | None = None) -> Policy:
    """Attest the demo's manual controls from evidence/demo/ into `policy.root`; return the
    reloaded policy. Writes attestations.yml there: give it a scratch copy of policy/."""
    for control, by, name in DEMO_ATTESTATIONS:
        _attest(
            policy,
            control=control,
            evidence=[DEMO_EVIDENCE / name],
            by=by,
            state_dir=state_dir,
            note="opsrunner demo",
            now=now,
        )
        policy = load_policy(policy.root)
    return policy
