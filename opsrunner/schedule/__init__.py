"""The schedule derived from the policy, its export to systemd/cron, and the daemon."""

from __future__ import annotations

from opsrunner.schedule.daemon import Daemon, exporter_targets, scrape
from opsrunner.schedule.jobs import (
    LATE_AFTER,
    Due,
    Job,
    due_jobs,
    export_cron,
    export_systemd,
    jobs_from_policy,
    next_runs,
    on_calendar,
)

__all__ = [
    "LATE_AFTER",
    "Daemon",
    "Due",
    "Job",
    "due_jobs",
    "export_cron",
    "export_systemd",
    "exporter_targets",
    "jobs_from_policy",
    "next_runs",
    "on_calendar",
    "scrape",
]
