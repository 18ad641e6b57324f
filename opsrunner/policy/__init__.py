"""The regulation, controls, parameters, roster, waivers and attestations, validated once."""

from __future__ import annotations

from opsrunner.policy.frequency import Frequency
from opsrunner.policy.loader import (
    Location,
    Policy,
    PolicyError,
    Problem,
    default_policy_dir,
    load_policy,
)
from opsrunner.policy.models import (
    Attestation,
    Clause,
    Control,
    Notice,
    Parameter,
    Person,
    RoleGrant,
    RosterFile,
    Settings,
    Waiver,
    Window,
)

__all__ = [
    "Attestation",
    "Clause",
    "Control",
    "Frequency",
    "Location",
    "Notice",
    "Parameter",
    "Person",
    "Policy",
    "PolicyError",
    "Problem",
    "RoleGrant",
    "RosterFile",
    "Settings",
    "Waiver",
    "Window",
    "default_policy_dir",
    "load_policy",
]
