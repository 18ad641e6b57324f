"""Mitogen for Ansible as an opt-in strategy: probed, and dropped cleanly if it won't load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: Set to 1 (find ansible_mitogen on sys.path) or to the directory holding ansible_mitogen.
ENV = "OPSRUNNER_MITOGEN"
STRATEGY = "mitogen_linear"

# Importing the strategy plugin is what runs mitogen's own ansible-core version check, so the
# probe imports it the way ansible-playbook will, in a fresh interpreter (a broken import must
# not leave half a module behind in ours).
_PROBE = (
    "import sys; sys.path.insert(0, sys.argv[1]) if sys.argv[1] else None; "
    "import ansible_mitogen.plugins.strategy.mitogen_linear as m; "
    "import os; print(os.path.dirname(m.__file__))"
)


def _located(where: str) -> str:
    """The directory to put on sys.path for ansible_mitogen ('' when it is importable as is)."""
    if where.strip() in ("", "1", "true", "yes"):
        return ""
    return str(Path(where).expanduser().resolve())


def strategy_env(where: str | None = None, python: str | None = None) -> tuple[dict[str, str], str]:
    """(environment for ansible-playbook, note) to run with Mitogen's linear strategy.

    `where` is $OPSRUNNER_MITOGEN's value when not given; unset or empty means off (the
    default). When ansible_mitogen cannot be imported with this Python and this ansible-core
    (missing, or it refuses the version), the environment is empty — Ansible's own strategy
    runs — and the note says why, so the caller can warn once and carry on.
    """
    value = os.environ.get(ENV, "") if where is None else where
    if not value.strip() or value.strip().lower() in ("0", "no", "false", "off"):
        return {}, ""
    path = _located(value)
    try:
        done = subprocess.run(
            [python or sys.executable, "-c", _PROBE, path],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return {}, f"mitogen not used ({ENV}={value}): probe failed: {exc}"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit {done.returncode}"
        return {}, f"mitogen not used ({ENV}={value}): {why}"
    plugins = done.stdout.strip().splitlines()[-1]
    env = {"ANSIBLE_STRATEGY_PLUGINS": plugins, "ANSIBLE_STRATEGY": STRATEGY}
    if path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (path, os.environ.get("PYTHONPATH")) if p)
    return env, f"mitogen strategy {STRATEGY} from {plugins}"
