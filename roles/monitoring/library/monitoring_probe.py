"""Read-only probe of the exporter's package, unit, configuration and sockets (role monitoring)."""

from __future__ import annotations

import grp
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

DOCUMENTATION = r"""
---
module: monitoring_probe
short_description: Read everything MON-001 and MON-002 judge on the host in one round trip
description:
  - Reads whether the exporter's package is installed (dpkg), its unit's state
    (systemctl show, is-enabled), whether its configuration file holds exactly
    the wanted content, owner root:root and mode 0644, and which addresses
    listen on the exporter's TCP port (ss). Never changes the host; safe in
    check mode.
options:
  package: {type: str, default: prometheus-node-exporter, description: The Debian package.}
  unit: {type: str, default: prometheus-node-exporter, description: The exporter's systemd unit.}
  config_path:
    type: str
    default: /etc/default/prometheus-node-exporter
    description: The exporter's configuration file.
  config_content:
    type: str
    required: true
    description: The wanted configuration (the role's template, rendered on the controller).
  port: {type: int, required: true, description: The exporter's TCP port.}
author: opsrunner
"""

RETURN = r"""
installed: {description: The package is installed (dpkg status "install ok installed")., type: bool}
enabled: {description: "systemctl is-enabled succeeds (the unit starts at boot).", type: bool}
running: {description: The unit's ActiveState is active or activating., type: bool}
show: {description: "systemctl show lines: UnitFileState, ActiveState, LoadState.", type: list}
config_matches:
  description: "The configuration file has the wanted content, owner root:root and mode 0644."
  type: bool
config_problem: {description: Why the configuration differs ('' when it matches)., type: str}
listening:
  description: "Local address:port of every socket listening on the port (ss -Htln)."
  type: list
"""

_WANT_MODE = 0o644


def _config(path: str, want: str) -> str:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "%s is missing" % path
    if not stat.S_ISREG(st.st_mode):
        return "%s is not a regular file" % path
    with open(path, "rb") as handle:
        have = handle.read()
    problems = []
    if have != want.encode("utf-8"):
        problems.append("content differs from the policy")
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    if (owner, group) != ("root", "root"):
        problems.append("owner %s:%s, want root:root" % (owner, group))
    if stat.S_IMODE(st.st_mode) != _WANT_MODE:
        problems.append("mode %04o, want 0644" % stat.S_IMODE(st.st_mode))
    return "%s: %s" % (path, ", ".join(problems)) if problems else ""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "package": {"type": "str", "default": "prometheus-node-exporter"},
            "unit": {"type": "str", "default": "prometheus-node-exporter"},
            "config_path": {"type": "str", "default": "/etc/default/prometheus-node-exporter"},
            "config_content": {"type": "str", "required": True},
            "port": {"type": "int", "required": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    rc, out, _err = module.run_command(
        ["dpkg-query", "-W", "-f=${Status}", p["package"]], environ_update={"LC_ALL": "C"}
    )
    installed = rc == 0 and out.strip() == "install ok installed"
    rc, out, err = module.run_command(
        [
            "systemctl",
            "show",
            p["unit"],
            "--property=UnitFileState",
            "--property=ActiveState",
            "--property=LoadState",
        ]
    )
    if rc != 0:
        module.fail_json(msg="systemctl show %s failed: %s" % (p["unit"], err.strip()))
    show = [line for line in out.splitlines() if line]
    props = dict(line.split("=", 1) for line in show if "=" in line)
    rc_enabled, _out, _err = module.run_command(["systemctl", "is-enabled", "--quiet", p["unit"]])
    rc, out, err = module.run_command(["ss", "-Htln", "sport = :%d" % p["port"]])
    if rc != 0:
        module.fail_json(msg="ss failed: %s" % err.strip())
    listening = [line.split()[3] for line in out.splitlines() if len(line.split()) > 3]
    problem = _config(p["config_path"], p["config_content"])
    module.exit_json(
        changed=False,
        installed=installed,
        enabled=rc_enabled == 0,
        running=props.get("ActiveState") in ("active", "activating"),
        show=show,
        config_matches=not problem,
        config_problem=problem,
        listening=listening,
    )


if __name__ == "__main__":
    main()
