"""Shared pytest fixtures: the session lab (3 real hosts) every lab test shares."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from opsrunner.lab.core import Lab
from tests import molecule_background
from tests.lab_helpers import leftovers, network_problems

#: The fault matrix: `fault_record` and the `faults` summary line (issue 15).
pytest_plugins = ["tests.fault_matrix"]

#: One lab per pytest run; the name carries the pid so parallel runs do not collide.
LAB_NAME = os.environ.get("OPSRUNNER_TEST_LAB", f"t{os.getpid() % 10_000_000}")
NOT_ROOT = "lab tests need root (systemd-nspawn, network namespaces, overlay mounts)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip lab and molecule tests with a clear reason when not root."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason=NOT_ROOT)
    for item in items:
        if "lab" in item.keywords or "molecule" in item.keywords:
            item.add_marker(skip)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the selected molecule scenarios in the background (tests/molecule_background.py)."""
    if os.geteuid() != 0 or os.environ.get("OPSRUNNER_MOLECULE_BACKGROUND", "1") == "0":
        return
    if session.config.getoption("collectonly"):
        return
    scenarios = [
        item.callspec.params["scenario"]
        for item in session.items
        if getattr(item, "originalname", "") == "test_molecule_scenario"
        and not item.get_closest_marker("skip")
    ]
    if scenarios:
        molecule_background.start(scenarios)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop molecule scenarios still queued or running (an interrupted or failed-fast run)."""
    molecule_background.stop()


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A lab of 3 hosts for the whole run.

    host1 (critical, db), host2 (standard, web), host3 (standard, backup_target).

    Network safety is asserted before boot, after boot and after teardown; the lab is
    torn down at the end even when tests fail. Reset hosts you break (``lab.reset(host)``).
    """
    if os.geteuid() != 0:
        pytest.skip(NOT_ROOT)
    before = network_problems()
    assert not before, f"network not safe before the lab: {before}"
    the_lab = Lab(LAB_NAME)
    addresses: list[str] = []
    try:
        the_lab.up(3)
        addresses = [h.address for h in the_lab.hosts.values()]
        problems = network_problems(the_lab)
        assert not problems, f"network not safe with the lab up: {problems}"
        yield the_lab
        problems = network_problems(the_lab)
        assert not problems, f"network not safe after the tests: {problems}"
    finally:
        the_lab.down(force=True)
    left = leftovers(LAB_NAME, addresses)
    assert not left, f"lab teardown left: {left}"
    after = network_problems()
    assert not after, f"network not safe after the lab: {after}"
