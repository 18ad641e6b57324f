"""Filters of the monitoring role: judge node-exporter samples against the policy thresholds."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ansible.errors import AnsibleFilterError  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families  # a project dependency

# Metrics the controls read; every other sample is dropped from the evidence.
_KEPT = re.compile(
    r"^node_(filesystem_(avail|size)_bytes|filesystem_readonly|memory_(MemAvailable|MemTotal)_bytes"
    r"|load(1|5|15)|cpu_seconds_total|systemd_unit_state|exporter_build_info)$|^node_exporter_build_info$"
)


def monitoring_samples(text: str) -> list[dict[str, Any]]:
    """The samples of a Prometheus exposition the controls need: [{name, labels, value}]."""
    if text_string_to_metric_families is None:
        raise AnsibleFilterError(
            "monitoring_samples needs the prometheus_client package on the controller"
        )
    if not isinstance(text, str) or not text.strip():
        raise AnsibleFilterError("monitoring_samples: the scrape is empty")
    out: list[dict[str, Any]] = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if _KEPT.match(sample.name):
                    out.append(
                        {
                            "name": sample.name,
                            "labels": dict(sample.labels),
                            "value": float(sample.value),
                        }
                    )
    except ValueError as exc:
        raise AnsibleFilterError(f"monitoring_samples: not a Prometheus exposition: {exc}") from exc
    return out


def _verdict(problems: list[str], evidence: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"ok": not problems, "problems": problems, "evidence": evidence, "data": data}


def _pick(samples: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in samples if s["name"] == name]


def _one(samples: list[dict[str, Any]], name: str) -> float | None:
    found = _pick(samples, name)
    return found[0]["value"] if found else None


def disk(samples: list[dict[str, Any]], max_used_percent: float) -> dict[str, Any]:
    """MON-003: every filesystem's used share at or below the maximum."""
    size = {
        s["labels"].get("mountpoint"): s["value"]
        for s in _pick(samples, "node_filesystem_size_bytes")
    }
    avail = {
        s["labels"].get("mountpoint"): s["value"]
        for s in _pick(samples, "node_filesystem_avail_bytes")
    }
    rows, problems = [], []
    for mount in sorted(m for m in size if m in avail):
        if size[mount] <= 0:
            continue
        used = round(100.0 * (size[mount] - avail[mount]) / size[mount], 2)
        rows.append(
            {
                "mountpoint": mount,
                "size_bytes": size[mount],
                "avail_bytes": avail[mount],
                "used_percent": used,
            }
        )
        if used > max_used_percent:
            problems.append(f"{mount} is {used}% full > {max_used_percent}%")
    if not rows:
        problems.append("no filesystem samples in the scrape")
    text = ", ".join(f"{r['mountpoint']} {r['used_percent']}%" for r in rows)
    return _verdict(
        problems,
        f"disk used (max {max_used_percent}%): {text}",
        {"filesystems": rows, "max_used_percent": max_used_percent},
    )


def resources(
    samples: list[dict[str, Any]], min_available_percent: float, max_load_per_cpu: float
) -> dict[str, Any]:
    """MON-004: available memory at least the minimum, 15-min load per CPU at most the maximum."""
    problems = []
    total, avail = (
        _one(samples, "node_memory_MemTotal_bytes"),
        _one(samples, "node_memory_MemAvailable_bytes"),
    )
    load = {k: _one(samples, f"node_{k}") for k in ("load1", "load5", "load15")}
    cpus = len({s["labels"].get("cpu") for s in _pick(samples, "node_cpu_seconds_total")}) or None
    mem_pct = round(100.0 * avail / total, 2) if total and avail is not None else None
    per_cpu = round(load["load15"] / cpus, 3) if load["load15"] is not None and cpus else None
    if mem_pct is None:
        problems.append("no memory samples in the scrape")
    elif mem_pct < min_available_percent:
        problems.append(f"memory available {mem_pct}% < {min_available_percent}%")
    if per_cpu is None:
        problems.append("no load or CPU samples in the scrape")
    elif per_cpu > max_load_per_cpu:
        problems.append(
            f"15-minute load {load['load15']} on {cpus} CPU(s) = {per_cpu} per CPU"
            f" > {max_load_per_cpu}"
        )
    data = {
        "memory_total_bytes": total,
        "memory_available_bytes": avail,
        "memory_available_percent": mem_pct,
        "min_available_percent": min_available_percent,
        "load": load,
        "cpus": cpus,
        "load15_per_cpu": per_cpu,
        "max_load_per_cpu": max_load_per_cpu,
    }
    return _verdict(problems, f"memory available {mem_pct}%, load15 per CPU {per_cpu}", data)


def _unit_states(samples: list[dict[str, Any]]) -> dict[str, str]:
    states: dict[str, str] = {}
    for s in _pick(samples, "node_systemd_unit_state"):
        if s["value"] == 1.0:
            states[s["labels"].get("name", "")] = s["labels"].get("state", "")
    return states


def failed_units(samples: list[dict[str, Any]], max_failed: int) -> dict[str, Any]:
    """MON-005: at most the allowed number of failed systemd units."""
    states = _unit_states(samples)
    failed = sorted(u for u, st in states.items() if st == "failed")
    problems = []
    if not states:
        problems.append("no systemd unit samples in the scrape (systemd collector off?)")
    elif len(failed) > max_failed:
        problems.append(f"{len(failed)} failed unit(s) > {max_failed}: {', '.join(failed)}")
    return _verdict(
        problems,
        f"{len(failed)} failed unit(s) of {len(states)}: {', '.join(failed) or 'none'}",
        {"failed": failed, "units_seen": len(states), "max_failed": max_failed},
    )


def app_checks(samples: list[dict[str, Any]], checks: list[dict[str, Any]]) -> dict[str, Any]:
    """MON-006: every application unit of the host's groups is active."""
    states = _unit_states(samples)
    rows, problems = [], []
    for check in checks:
        unit = str(check.get("unit", ""))
        state = states.get(unit, "absent")
        rows.append({"name": check.get("name", unit), "unit": unit, "state": state})
        if state != "active":
            problems.append(f"{check.get('name', unit)}: {unit} is {state}, want active")
    text = (
        ", ".join(f"{r['name']} ({r['unit']}) {r['state']}" for r in rows)
        or "no application checks for this host"
    )
    return _verdict(problems, text, {"checks": rows})


def monitoring_evaluate(
    text: str, thresholds: dict[str, Any], checks: list[dict[str, Any]]
) -> dict[str, Any]:
    """Every threshold control's verdict from one scrape, with the samples used as evidence."""
    samples = monitoring_samples(text)
    try:
        verdicts = {
            "MON-003": disk(samples, float(thresholds["disk_max_used_percent"])),
            "MON-004": resources(
                samples,
                float(thresholds["memory_min_available_percent"]),
                float(thresholds["load_max_per_cpu"]),
            ),
            "MON-005": failed_units(samples, int(thresholds["failed_units_max"])),
            "MON-006": app_checks(samples, list(checks or [])),
        }
    except KeyError as exc:
        raise AnsibleFilterError(f"monitoring_evaluate: missing threshold {exc}") from exc
    return {
        "controls": verdicts,
        "scrape_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "scrape_bytes": len(text.encode("utf-8")),
        "samples_kept": len(samples),
    }


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "monitoring_samples": monitoring_samples,
            "monitoring_evaluate": monitoring_evaluate,
        }
