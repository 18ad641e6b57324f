"""Reports: one canonical document per run, and every format rendered from it."""

from __future__ import annotations

from opsrunner.reports.document import SCHEMA_VERSION, Report, assemble, build, resolve_run
from opsrunner.reports.publish import publish
from opsrunner.reports.render import FORMATS, render

__all__ = [
    "FORMATS",
    "SCHEMA_VERSION",
    "Report",
    "assemble",
    "build",
    "publish",
    "render",
    "resolve_run",
]
