"""Reports: one canonical document per run, and every format rendered from it."""

from __future__ import annotations

from opsrunner.reports.document import SCHEMA_VERSION, Report, assemble, build, resolve_run
from opsrunner.reports.publish import publish
from opsrunner.reports.render import FORMATS, render
from opsrunner.reports.summary import compliance_summary, render_summary, summary_json

__all__ = [
    "FORMATS",
    "SCHEMA_VERSION",
    "Report",
    "assemble",
    "build",
    "compliance_summary",
    "publish",
    "render",
    "render_summary",
    "resolve_run",
    "summary_json",
]
