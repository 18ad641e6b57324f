"""Audit, enforce and operate runs on ansible-runner, streamed into the store.

The Python API the demo and other tools call:

- `run(mode, inventory, limit=None, controls=None, store=None, …) -> RunRecord`
- `compliance_summary(store, run_key, policy=None, model=None, as_json=False) -> str`
- `import_artifacts(store, run_dir) -> RunRecord` (crash recovery, idempotent)
"""

from __future__ import annotations

from opsrunner.runner.run import MODES, RunError, import_artifacts, lock_name, run
from opsrunner.runner.summary import compliance_summary, render_summary, run_scores
from opsrunner.store import RunRecord, Store

__all__ = [
    "MODES",
    "RunError",
    "RunRecord",
    "Store",
    "compliance_summary",
    "import_artifacts",
    "lock_name",
    "render_summary",
    "run",
    "run_scores",
]
