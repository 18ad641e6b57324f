"""meta/argument_specs.yml defaults are what defaults/main.yml sets.

Ansible renders a templated `default:` of an argument spec while it validates the role's
arguments: a spec whose template differs from the role default (say, without `| default([])`)
breaks plain `ansible-playbook` runs that the role default itself would have allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLES = sorted(p.parent.parent for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))


def _spec_defaults(role: Path) -> dict[str, Any]:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    out: dict[str, Any] = {}
    for entry in (specs.get("argument_specs") or {}).values():
        for name, option in (entry.get("options") or {}).items():
            if isinstance(option, dict) and "default" in option:
                out[name] = option["default"]
    return out


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_templated_spec_defaults_match_the_role_defaults(role: Path) -> None:
    defaults_file = role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text(encoding="utf-8")) or {}
    for name, value in _spec_defaults(role).items():
        if isinstance(value, str) and "{{" in value:
            assert name in defaults, f"{role.name}: {name} has a templated spec default only"
            assert value == defaults[name], f"{role.name}: {name} spec default differs"
