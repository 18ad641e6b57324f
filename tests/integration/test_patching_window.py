"""The patching role's maintenance window and notice rules (its filter plugin), without a lab."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

PLUGIN = (
    Path(__file__).resolve().parents[2]
    / "roles"
    / "patching"
    / "filter_plugins"
    / "patching_window.py"
)


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("patching_window", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


state = _load().patching_window_state

# Sunday 02:00 Asia/Shanghai = Saturday 18:00 UTC.
CRITICAL = {
    "name": "critical-weekly",
    "groups": ["critical"],
    "timezone": "Asia/Shanghai",
    "start": "0 2 * * SUN",
    "duration_minutes": 240,
    "notice_hours": 72,
}
NOTICE = {
    "window": "critical-weekly",
    "window_start": "2026-11-29T02:00:00+08:00",
    "sent_at": "2026-11-25T01:00:00Z",
    "ticket": "CHG-1",
}


def test_inside_window_with_notice_allows_enforce() -> None:
    got: dict[str, Any] = state(
        [CRITICAL], [NOTICE], ["critical", "db"], now="2026-11-28T19:00:00Z"
    )
    assert got["enforce_allowed"] and got["inside"] and got["compliant"]
    assert "CHG-1" in got["reason"]


def test_just_before_the_window_defers() -> None:
    got = state([CRITICAL], [NOTICE], ["critical"], now="2026-11-28T17:59:00Z")
    assert not got["enforce_allowed"] and not got["inside"]
    assert got["reason"].startswith("outside every maintenance window")
    assert got["compliant"], "the notice for the next window is on record"


def test_window_end_is_exclusive() -> None:
    assert not state([CRITICAL], [NOTICE], ["critical"], now="2026-11-28T22:00:00Z")["inside"]
    assert state([CRITICAL], [NOTICE], ["critical"], now="2026-11-28T21:59:59Z")["inside"]


def test_late_notice_blocks_enforce_and_fails_the_control() -> None:
    late = dict(NOTICE, sent_at="2026-11-27T00:00:00Z")  # 42 h before the start, 72 h required
    got = state([CRITICAL], [late], ["critical"], now="2026-11-28T19:00:00Z")
    assert got["inside"] and not got["enforce_allowed"] and not got["compliant"]
    assert "sent late" in got["reason"]


def test_notice_for_another_occurrence_does_not_count() -> None:
    other = dict(NOTICE, window_start="2026-11-22T02:00:00+08:00")
    assert not state([CRITICAL], [other], ["critical"], now="2026-11-28T19:00:00Z")[
        "enforce_allowed"
    ]


def test_overdue_notice_for_the_next_window_fails_before_it_opens() -> None:
    # Three days ahead of the start the notice is due; none on record.
    got = state([CRITICAL], [], ["critical"], now="2026-11-26T12:00:00Z")
    assert not got["compliant"] and "overdue" in got["evidence"]


def test_notice_not_yet_due_passes() -> None:
    got = state([CRITICAL], [], ["critical"], now="2026-11-23T00:00:00Z")
    assert got["compliant"] and "due by" in got["evidence"]


def test_host_without_window_defers_and_fails() -> None:
    got = state([CRITICAL], [NOTICE], ["standard", "web"], now="2026-11-28T19:00:00Z")
    assert not got["enforce_allowed"] and not got["compliant"]
    assert "no maintenance window" in got["reason"]


def test_bad_window_names_the_field() -> None:
    with pytest.raises(AnsibleFilterError, match=r"windows\[0\]\.start"):
        state([dict(CRITICAL, start="every sunday")], [], ["critical"], now="2026-11-28T19:00:00Z")
    with pytest.raises(AnsibleFilterError, match=r"windows\[0\]\.timezone"):
        state(
            [dict(CRITICAL, timezone="Mars/Olympus")], [], ["critical"], now="2026-11-28T19:00:00Z"
        )
    with pytest.raises(AnsibleFilterError, match=r"notices\[0\]\.sent_at"):
        state(
            [CRITICAL],
            [dict(NOTICE, sent_at="yesterday")],
            ["critical"],
            now="2026-11-28T19:00:00Z",
        )
