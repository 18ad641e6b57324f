"""The full host x control matrix as CSV, with spreadsheet formula injection neutralised."""

from __future__ import annotations

import csv
import io

from opsrunner.reports.document import Report
from opsrunner.reports.safe import csv_cell

COLUMNS = (
    "host",
    "control",
    "kind",
    "severity",
    "clause",
    "chapter",
    "raw",
    "effective",
    "waiver",
    "reason",
    "evidence",
    "evidence_at",
    "evidence_sha256",
    "task",
    "run",
)


def render(report: Report) -> str:
    """One row per host x control (the organisation's row for manual controls)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(COLUMNS)
    for row in report["results"]:
        writer.writerow([csv_cell("" if row[c] is None else row[c]) for c in COLUMNS])
    return out.getvalue()
