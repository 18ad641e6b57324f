"""opsrunner: the operations regulation as Ansible-driven policy-as-code."""

__version__ = "0.1.0"
