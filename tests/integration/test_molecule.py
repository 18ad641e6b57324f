"""Every molecule scenario under molecule/ runs `molecule test` on real lab hosts.

The scenarios run in the background beside the other tests, one at a time, from the end of
collection (tests/molecule_background.py); each test waits for its scenario and asserts it.
"""

from __future__ import annotations

import pytest

from tests.molecule_background import SCENARIO_TIMEOUT, SCENARIOS, outcome


@pytest.mark.slow
@pytest.mark.lab
@pytest.mark.molecule
@pytest.mark.timeout(len(SCENARIOS) * SCENARIO_TIMEOUT)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str) -> None:
    code, out = outcome(scenario)
    assert code == 0, f"molecule test -s {scenario} failed:\n{out[-8000:]}"
    for action in ("create", "check", "converge", "idempotence", "verify", "destroy"):
        assert f"{action}: Executed: Successful" in out, (
            f"{action} did not run successfully:\n{out[-4000:]}"
        )
