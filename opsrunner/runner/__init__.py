"""Audit, enforce and operate runs on ansible-runner, streamed into the store.

The Python API the demo and other tools call:

- `run(mode, inventory, limit=None, controls=None, store=None, …) -> RunRecord`
- `import_artifacts(store, run_dir) -> RunRecord` (crash recovery, idempotent)

Scores are scoring's (`opsrunner.scoring.run_scores`), rendering is reports'
(`opsrunner.reports.compliance_summary`): runner only runs and records.
"""

from __future__ import annotations

from opsrunner.runner.run import MODES, RunError, import_artifacts, lock_name, run
from opsrunner.store import RunRecord, Store

__all__ = [
    "MODES",
    "RunError",
    "RunRecord",
    "Store",
    "import_artifacts",
    "lock_name",
    "run",
]
