"""The roles, playbooks and molecule scenarios pass ansible-lint's production profile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ansible_lint_production_profile() -> None:
    lint = Path(sys.executable).with_name("ansible-lint")
    env = {**os.environ, "PATH": f"{lint.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        [str(lint), "--profile", "production", "--nocolor", "roles", "playbooks", "molecule"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "Profile 'production' was required, and it passed" in output
