"""Scrape a host's exporter from the controller in-process, judge the samples (role monitoring)."""

from __future__ import annotations

import importlib.util
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase  # type: ignore[import-untyped]

DOCUMENTATION = r"""
---
module: monitoring_scrape
short_description: One controller-side scrape of the exporter, judged against the thresholds
description:
  - Runs on the controller only, inside the worker (no module is shipped or
    forked), one HTTP GET of the exporter's metrics page as the controller and
    opsrunner's daemon see it (never through a proxy). This replaces the two
    C(uri) tasks delegated to localhost (MON-002's reachability test and the
    threshold controls' scrape) with one request.
  - Never fails; an unreachable exporter or a page that is no Prometheus
    exposition gives C(status) and C(error), so every control can report.
options:
  url: {description: The exporter's metrics URL., required: true, type: str}
  timeout: {description: Seconds to wait for the answer., type: int, default: 10}
  evaluate: {description: Judge the samples (MON-003..MON-006)., type: bool, default: true}
  thresholds: {description: "disk_max_used_percent, memory_min_available_percent, load_max_per_cpu,
               failed_units_max.", type: dict, default: {}}
  app_checks: {description: "The host groups' application checks [{name, unit}].", type: list,
               default: []}
"""

RETURN = r"""
status: {description: HTTP status of the answer; -1 when none came., type: int}
msg: {description: Why no 200 answer came ('' when one did)., type: str}
seconds: {description: How long the request took., type: float}
scraped_at: {description: UTC time of the scrape (YYYY-MM-DDTHH:MM:SSZ)., type: str}
eval: {description: "The filter monitoring_evaluate's verdicts ({} when not judged).", type: dict}
error: {description: Why the thresholds could not be judged ('' when they were)., type: str}
"""

_FILTER = Path(__file__).resolve().parent.parent / "filter_plugins" / "monitoring_metrics.py"


def _evaluate() -> Any:
    spec = importlib.util.spec_from_file_location("_opsrunner_monitoring_metrics", _FILTER)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {_FILTER}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.monitoring_evaluate


class ActionModule(ActionBase):  # type: ignore[misc]
    """GET the metrics page from the controller; judge it with the role's filter."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("url", "timeout", "evaluate", "thresholds", "app_checks"))
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        args = self._task.args
        url = str(args["url"])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        status, msg, text = -1, "", ""
        scraped_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        start = time.monotonic()
        try:
            with opener.open(url, timeout=float(args.get("timeout", 10))) as resp:
                status = int(resp.status)
                text = resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            status, msg = int(exc.code), f"Status code was {exc.code} and not [200]: {exc}"
        except (OSError, ValueError) as exc:
            msg = f"Request failed: {exc}"
        seconds = round(time.monotonic() - start, 3)
        if status != 200 and not msg:
            msg = f"Status code was {status} and not [200]"
        verdicts: dict[str, Any] = {}
        error = ""
        if self._boolean(args.get("evaluate", True)):
            if status != 200:
                error = f"no samples from {url}: {msg}"
            else:
                try:
                    verdicts = _evaluate()(
                        text, dict(args.get("thresholds") or {}), list(args.get("app_checks") or [])
                    )
                except Exception as exc:  # any parse failure is the controls' error
                    error = f"no samples from {url}: {exc}"
        result.update(
            changed=False,
            failed=False,
            status=status,
            msg=msg,
            seconds=seconds,
            scraped_at=scraped_at,
            eval=verdicts,
            error=error,
        )
        return result

    @staticmethod
    def _boolean(value: Any) -> bool:
        if isinstance(value, str):
            return value.strip().lower() in ("true", "yes", "1", "on")
        return bool(value)
