"""Every molecule scenario under molecule/ runs `molecule test` on real lab hosts."""

from __future__ import annotations

import os
import subprocess

import pytest

from opsrunner.paths import project_root

ROOT = project_root()
SCENARIOS = sorted(
    p.parent.name
    for p in (ROOT / "molecule").glob("*/molecule.yml")
    if not p.parent.name.startswith("_")
)


@pytest.mark.slow
@pytest.mark.lab
@pytest.mark.molecule
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str) -> None:
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        # one lab per scenario and pytest run, so a developer's own molecule run does not collide
        "OPSRUNNER_MOLECULE_LAB": f"m{os.getpid() % 100000}{SCENARIOS.index(scenario)}",
        "ANSIBLE_NOCOLOR": "1",
        "PY_COLORS": "0",
        "NO_COLOR": "1",
    }
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "molecule"), "test", "-s", scenario],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"molecule test -s {scenario} failed:\n{out[-8000:]}"
    for action in ("create", "check", "converge", "idempotence", "verify", "destroy"):
        assert f"{action}: Executed: Successful" in out, (
            f"{action} did not run successfully:\n{out[-4000:]}"
        )
