"""Every role module's and plugin's DOCUMENTATION is YAML whose options carry only known keys.

A comma or colon in an unquoted description silently turns into extra keys (`paths: null`),
which ansible-doc then shows as nonsense; this catches it without importing the modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(ROOT.glob("roles/*/library/*.py")) + sorted(ROOT.glob("plugins/*/*.py"))
OPTION_KEYS = {
    "type", "required", "default", "description", "choices", "elements", "aliases", "no_log",
    "suboptions", "version_added",
}  # fmt: skip


def _documentation(path: Path) -> str | None:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "DOCUMENTATION"
            and isinstance(node.value, ast.Constant)
        ):
            return str(node.value.value)
    return None


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_documentation_options_are_well_formed(path: Path) -> None:
    text = _documentation(path)
    if text is None:
        pytest.skip("no DOCUMENTATION (not a module or plugin)")
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict) and doc.get("short_description"), "short_description missing"
    for name, option in (doc.get("options") or {}).items():
        assert isinstance(option, dict), f"option {name}"
        extra = set(option) - OPTION_KEYS
        assert not extra, f"option {name}: stray keys {sorted(extra)} (quote the description)"
        assert option.get("description"), f"option {name} has no description"
