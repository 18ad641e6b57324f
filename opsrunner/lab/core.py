"""The lab: named sets of real Debian hosts under systemd-nspawn, reached over SSH with the lab key.

Python API (the CLI ``opsrunner lab …`` and the pytest ``lab`` fixture use it)::

    lab = Lab("dev")
    lab.up(3)                              # or hosts=[HostSpec("web1", ("web",)), ...]
    lab.hosts                              # {"host1": HostInfo(address, groups, ...), ...}
    lab.inventory_path                     # Ansible inventory (user root, the lab key, the groups)
    lab.ssh("host1", "systemctl is-system-running")   # CompletedProcess[str]
    lab.boot_marker("host1")               # changes on every boot of the host
    lab.snapshot("host1")                  # persistent state, to assert an audit changed nothing
    lab.reset("host1")                     # back to the pristine image in seconds
    lab.repo.publish_package("opsdemo-x", "1.1", "bookworm-security")
    lab.repo.publish_file("feeds/cves.json", "...")
    lab.down()

Where things live: everything a lab owns is recorded under
``<lab root>/<name>/`` (``/var/lib/opsrunner/lab``, env ``OPSRUNNER_LAB_DIR``):
``state.json``, per-host ``hosts/<host>/{upper,work,merged}`` (overlayfs over the
cached image), supervisor logs, the web root ``www/``. The SSH key pair is
``<lab root>/ssh/id_ed25519`` (one for all labs, never in git).

Reboot marker: the kernel's boot_id is the VM's and never changes in a
container. Each host runs ``opsrunner-boot-marker.service`` at boot, which writes
a fresh UUID to ``/run/opsrunner-boot-id`` (``/run`` is a tmpfs, emptied by every
boot). Roles that must tell whether a host rebooted read that file when it
exists and ``/proc/sys/kernel/random/boot_id`` otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, TypeVar

import yaml
from filelock import FileLock
from pydantic import BaseModel, ConfigDict

from opsrunner import paths
from opsrunner.lab import net
from opsrunner.lab.image import Image, ensure_image, image_paths
from opsrunner.lab.net import LabError
from opsrunner.lab.repo import DEFAULT_PORT, Repo, is_our_process, stop_server
from opsrunner.lab.supervisor import (
    NSPAWN_RUN,
    cgroup_pids,
    remove_cgroup_tree,
    remove_nspawn_leftovers,
)
from opsrunner.paths import project_root

DEFAULT_LAB = "lab"
#: Groups of ``lab up -n N`` hosts: the policy targets tiers and roles by group.
DEFAULT_GROUPS: dict[int, tuple[str, ...]] = {
    1: ("critical", "db"),
    2: ("standard", "web"),
    3: ("standard", "backup_target"),
}
#: Paths in a host's overlay upper dir that change by merely running (excluded from snapshots).
VOLATILE: tuple[str, ...] = (
    "var/log",
    "var/lib/systemd",
    "var/cache",
    "var/lib/apt/lists",
    "var/lib/logrotate",
    "var/lib/sudo",
    "var/lib/fail2ban",
    "var/lib/chrony",
    "var/lib/private",
    "var/tmp",
    "tmp",
    "root/.ansible",
    "root/.cache",
    "root/.lesshst",
    "root/.bash_history",
    "run",
)
_VAR_NAME = re.compile(r"[a-z_][a-z0-9_]*")
CGROUP_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd"))
SSH_READY_TIMEOUT = 90.0
#: ansible.cfg's (and molecule's base config's) ssh control_path_dir.
ANSIBLE_CP_DIR = "/tmp/.opsrunner-cp"  # noqa: S108


def lab_root() -> Path:
    """Where every lab's state lives (``OPSRUNNER_LAB_DIR`` overrides)."""
    return Path(os.environ.get("OPSRUNNER_LAB_DIR", "/var/lib/opsrunner/lab"))


def ssh_key() -> Path:
    """The lab's private key (generated on first use)."""
    return lab_root() / "ssh" / "id_ed25519"


def ensure_ssh_key() -> Path:
    """Generate the lab key pair once."""
    key = ssh_key()
    if not key.is_file():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "opsrunner-lab", "-f", str(key)],
            check=True,
        )
    return key


def default_hosts(n: int) -> list[HostSpec]:
    """``host1``..``hostN`` with the default groups (extra hosts are ``standard``)."""
    if n < 1 or n > 50:
        raise LabError(f"number of hosts must be 1..50, got {n}")
    return [
        HostSpec(name=f"host{i}", groups=DEFAULT_GROUPS.get(i, ("standard",)))
        for i in range(1, n + 1)
    ]


class HostSpec(BaseModel):
    """A host to boot: inventory name and Ansible groups."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    groups: tuple[str, ...] = ()


class HostInfo(BaseModel):
    """A booted host as recorded in the lab state."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    index: int
    address: str
    mac: str
    groups: tuple[str, ...]
    machine: str


P = ParamSpec("P")
R = TypeVar("R")


def _system_umask(method: Callable[P, R]) -> Callable[P, R]:
    """Build lab hosts with the usual umask 022, not opsrunner's owner-only 077: a host's root
    filesystem, its overlay and the lab's apt repository are a system's files (dpkg-deb refuses a
    0700 control directory; users inside a host must traverse /)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with paths.umask(0o022):
            return method(*args, **kwargs)

    return wrapper


class LabState(BaseModel):
    """What a lab created (``state.json``): enough for ``down --force`` after a killed run."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    octet: int
    image_key: str
    port: int
    http_pid: int | None = None
    inventory: str
    hosts: tuple[HostInfo, ...] = ()
    #: Site variables for every host (``all: vars`` of the inventory), see ``set_inventory_vars``.
    inventory_vars: dict[str, str | int | bool] = {}


@dataclass(frozen=True)
class Snapshot:
    """A host's persistent state: path → digest of (type, mode, owner, content) of the upper dir."""

    host: str
    entries: dict[str, str] = field(compare=True)

    @property
    def digest(self) -> str:
        """One hash over all entries."""
        return hashlib.sha256(json.dumps(self.entries, sort_keys=True).encode()).hexdigest()

    def diff(self, other: Snapshot) -> dict[str, tuple[str | None, str | None]]:
        """Paths whose entry differs: path → (mine, theirs)."""
        keys = set(self.entries) | set(other.entries)
        return {
            k: (self.entries.get(k), other.entries.get(k))
            for k in sorted(keys)
            if self.entries.get(k) != other.entries.get(k)
        }


def check_prerequisites() -> None:
    """Root, tools and kernel features the lab needs, each with a clear error."""
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root (systemd-nspawn, network namespaces, overlay mounts): run as root"
        )
    for tool, pkg in (
        ("systemd-nspawn", "systemd-container"),
        ("ip", "iproute2"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("apt-ftparchive", "apt-utils"),
        ("dpkg-deb", "dpkg"),
    ):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is missing: install {pkg} (scripts/bootstrap does)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise LabError(
            "the kernel has no overlayfs (needed for one overlay per host): `modprobe overlay`"
        )
    for root in CGROUP_ROOTS:
        if not root.is_dir():
            raise LabError(
                f"{root} is missing: the lab expects the hybrid cgroup layout of this machine kind"
            )


#: Kernel limits every container's systemd eats into: the default 128 inotify instances per
#: user run out at about a dozen hosts across all labs ("Failed to allocate manager object:
#: Too many open files"), so ``up`` raises them (never lowers).
SYSCTL_MINIMUMS: dict[str, int] = {
    "fs/inotify/max_user_instances": 8192,
    "fs/inotify/max_user_watches": 524288,
}


def raise_kernel_limits() -> None:
    """Raise the inotify limits to what many concurrent hosts need."""
    for key, minimum in SYSCTL_MINIMUMS.items():
        p = Path("/proc/sys", key)
        with contextlib.suppress(OSError, ValueError):
            if int(p.read_text()) < minimum:
                p.write_text(str(minimum))


class Lab:
    """A named lab of hosts; see the module docstring."""

    def __init__(self, name: str = DEFAULT_LAB, *, inventory: Path | None = None) -> None:
        self.name = net.check_name(name)
        self.dir = lab_root() / name
        self._inventory = inventory

    # -- state -----------------------------------------------------------
    @property
    def state_file(self) -> Path:
        """``state.json`` of this lab."""
        return self.dir / "state.json"

    def state(self) -> LabState | None:
        """The recorded state, or None when the lab does not exist."""
        if not self.state_file.is_file():
            return None
        return LabState.model_validate_json(self.state_file.read_text())

    def _require_state(self) -> LabState:
        st = self.state()
        if st is None:
            raise LabError(
                f"lab {self.name!r} is not up (no {self.state_file}); "
                f"`opsrunner lab up --name {self.name}`"
            )
        return st

    def _save(self, st: LabState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(st.model_dump_json(indent=2))
        tmp.replace(self.state_file)

    @property
    def hosts(self) -> dict[str, HostInfo]:
        """Host name → address, groups, machine name."""
        st = self.state()
        return {h.name: h for h in st.hosts} if st else {}

    @property
    def inventory_path(self) -> Path:
        """The Ansible inventory ``up`` writes."""
        st = self.state()
        if st is not None:
            return Path(st.inventory)
        return self._default_inventory()

    def _default_inventory(self) -> Path:
        if self._inventory is not None:
            return self._inventory.resolve()
        if self.name == DEFAULT_LAB:
            return project_root() / "inventories" / "lab" / "hosts.yml"
        return self.dir / "hosts.yml"

    @property
    def image(self) -> Image:
        """The image this lab runs on."""
        st = self._require_state()
        return image_paths(st.image_key)

    @property
    def repo(self) -> Repo:
        """The lab's apt repository and web root."""
        st = self._require_state()
        return Repo(
            self.dir / "www", image_paths(st.image_key), net.bridge_address(st.octet), st.port
        )

    def host(self, name: str) -> HostInfo:
        """One host's record, with a clear error for an unknown name."""
        self._require_state()
        hosts = self.hosts
        if name not in hosts:
            raise LabError(
                f"lab {self.name!r} has no host {name!r} (hosts: {', '.join(hosts) or 'none'})"
            )
        return hosts[name]

    def _hdir(self, host: str) -> Path:
        return self.dir / "hosts" / host

    def _cgroups(self, host: str) -> list[Path]:
        return [root / "opsrunner" / self.name / host for root in CGROUP_ROOTS]

    # -- up --------------------------------------------------------------
    @_system_umask
    def up(
        self,
        n: int = 3,
        *,
        hosts: list[HostSpec] | None = None,
        port: int = DEFAULT_PORT,
        wait: bool = True,
    ) -> dict[str, HostInfo]:
        """Boot the lab (idempotent: what runs stays, what is missing or dead is (re)created)."""
        check_prerequisites()
        raise_kernel_limits()
        specs = hosts if hosts is not None else default_hosts(n)
        _check_specs(specs)
        image = ensure_image(log=False)
        ensure_ssh_key()
        lab_root().mkdir(parents=True, exist_ok=True)
        # Two labs starting at once must not pick the same subnet: allocate under a lock.
        with FileLock(str(lab_root() / ".allocate.lock")):
            st = self.state()
            if st is None:
                self._check_no_leftovers()
                octet = self._allocate_octet()
                st = LabState(
                    name=self.name,
                    octet=octet,
                    image_key=image.key,
                    port=port,
                    inventory=str(self._default_inventory()),
                )
            elif st.image_key != image.key and all(not self.is_running(h.name) for h in st.hosts):
                st = st.model_copy(update={"image_key": image.key})
            self._save(st)
            net.ensure_bridge(self.name, st.octet)
        repo = Repo(
            self.dir / "www", image_paths(st.image_key), net.bridge_address(st.octet), st.port
        )
        repo.build()
        if not (st.http_pid and is_our_process(st.http_pid, str(self.dir / "www"))):
            st = st.model_copy(update={"http_pid": repo.start_server(self.dir / "http.log")})
            self._save(st)
        # Hosts no longer wanted go first, so their index can be reused.
        wanted = {s.name for s in specs}
        for old in st.hosts:
            if old.name not in wanted:
                self._destroy_host(old, st.octet)
        kept = {h.name: h for h in st.hosts if h.name in wanted}
        infos: list[HostInfo] = []
        for i, spec in enumerate(specs, start=1):
            info = HostInfo(
                name=spec.name,
                index=i,
                address=net.host_address(st.octet, i),
                mac=net.mac_address(st.octet, i),
                groups=spec.groups,
                machine=f"{self.name}-{spec.name}",
            )
            prev = kept.get(spec.name)
            if prev is not None and prev.index != i:
                self._destroy_host(prev, st.octet)
            infos.append(info)
        st = st.model_copy(update={"hosts": tuple(infos)})
        self._save(st)
        for info in infos:
            net.ensure_host_net(self.name, info.name, info.index, st.octet)
            if not self.is_running(info.name):
                # A supervisor killed with the run may have left nspawn or container
                # processes behind in the host's cgroups: clear them before booting again.
                self._stop_host(info)
                self._start_host(info, st, repo)
        self._write_inventory(st)
        if wait:
            for info in infos:
                self.wait_ready(info.name)
        return self.hosts

    def _check_no_leftovers(self) -> None:
        leftovers = net.lab_links(self.name) + net.lab_netns(self.name)
        if leftovers:
            raise LabError(
                f"stale lab {self.name!r} found without state ({', '.join(leftovers)}): "
                f"clean it with `opsrunner lab down --name {self.name} --force`"
            )

    def _allocate_octet(self) -> int:
        taken = net.used_octets()
        root = lab_root()
        if root.is_dir():
            for d in root.iterdir():
                sf = d / "state.json"
                if d.name != self.name and sf.is_file():
                    with contextlib.suppress(ValueError, OSError):
                        taken.add(LabState.model_validate_json(sf.read_text()).octet)
        start = net.preferred_octet(self.name)
        for k in range(230):
            octet = 20 + (start - 20 + k) % 230
            if octet not in taken:
                return octet
        raise LabError("no free 10.233.X.0/24 subnet left for a new lab")

    def _start_host(self, info: HostInfo, st: LabState, repo: Repo) -> None:
        hdir = self._hdir(info.name)
        merged = hdir / "merged"
        self._mount_overlay(info.name, image_paths(st.image_key))
        self._host_setup(info, merged, repo, st)
        cmd = [
            "systemd-nspawn",
            "--boot",
            f"--directory={merged}",
            f"--machine={info.machine}",
            "--register=no",
            "--keep-unit",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            "--console=passive",
            f"--network-namespace-path=/run/netns/{net.netns_name(self.name, info.name)}",
            "--capability=CAP_NET_ADMIN",
        ]
        (hdir / "nspawn.json").write_text(
            json.dumps(
                {
                    "cmd": cmd,
                    "cgroups": [str(p) for p in self._cgroups(info.name)],
                    "netns": net.netns_name(self.name, info.name),
                    "machine": info.machine,
                    "directory": str(merged),
                }
            )
        )
        with (hdir / "console.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "opsrunner.lab.supervisor", str(hdir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd="/",
            )
        (hdir / "supervisor.pid").write_text(str(proc.pid))
        # Until exec, the child's cmdline is ours: wait so is_running() does not see a stranger.
        deadline = time.monotonic() + 5
        while (
            not is_our_process(proc.pid, "opsrunner.lab.supervisor") and time.monotonic() < deadline
        ):
            if proc.poll() is not None:
                raise LabError(
                    f"supervisor of {info.name} exited at once:\n{self.console_tail(info.name)}"
                )
            time.sleep(0.02)

    def _mount_overlay(self, host: str, image: Image) -> None:
        hdir = self._hdir(host)
        merged = hdir / "merged"
        if os.path.ismount(merged):
            return
        for d in ("upper", "work", "merged"):
            (hdir / d).mkdir(parents=True, exist_ok=True)
        opts = f"lowerdir={image.rootfs},upperdir={hdir / 'upper'},workdir={hdir / 'work'}"
        proc = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise LabError(f"overlay mount for {host} failed: {proc.stderr.strip()}")

    def _host_setup(self, info: HostInfo, root: Path, repo: Repo, st: LabState) -> None:
        """Per-host files written into the overlay before boot (re-applied by reset).

        /etc/hosts names the other lab hosts and the repository server (``lab-repo``),
        as DNS would on a real network (the hosts have no resolver).
        """
        (root / "etc" / "hostname").write_text(f"{info.name}\n")
        peers = "".join(f"{h.address}\t{h.name}\n" for h in st.hosts if h.name != info.name)
        (root / "etc" / "hosts").write_text(
            "127.0.0.1\tlocalhost\n"
            f"127.0.1.1\t{info.name}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{net.bridge_address(st.octet)}\tlab-repo\n{peers}"
        )
        ssh_dir = root / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        pub = Path(str(ssh_key()) + ".pub").read_text()
        (ssh_dir / "authorized_keys").write_text(pub)
        (ssh_dir / "authorized_keys").chmod(0o600)
        (root / "etc" / "apt" / "sources.list").write_text(repo.sources_list())

    def is_running(self, host: str) -> bool:
        """Whether the host's supervisor (and so its container) runs."""
        pidf = self._hdir(host) / "supervisor.pid"
        if not pidf.is_file():
            return False
        try:
            pid = int(pidf.read_text())
        except ValueError:
            return False
        return is_our_process(pid, "opsrunner.lab.supervisor")

    def console_tail(self, host: str, lines: int = 15) -> str:
        """The last lines of a host's console and supervisor log (for error messages)."""
        log = self._hdir(host) / "console.log"
        if not log.is_file():
            return "(no console log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, host: str, timeout: float = SSH_READY_TIMEOUT) -> None:
        """Wait until the host answers SSH and systemd has finished booting."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if not self.is_running(host):
                raise LabError(
                    f"host {host} of lab {self.name} is not running; "
                    f"last lines of {self._hdir(host) / 'console.log'}:\n{self.console_tail(host)}"
                )
            proc = self.ssh(
                host,
                "systemctl is-system-running --wait",
                timeout=max(5.0, deadline - time.monotonic()),
                connect_timeout=2,
            )
            state = proc.stdout.strip()
            if state in ("running", "degraded"):
                return
            last = (proc.stderr or state).strip()
            time.sleep(0.3)
        raise LabError(f"host {host} of lab {self.name} not ready after {timeout:.0f}s: {last}")

    def _write_inventory(self, st: LabState) -> None:
        groups: dict[str, dict[str, dict[str, None]]] = {}
        for h in st.hosts:
            for g in h.groups:
                groups.setdefault(g, {"hosts": {}})["hosts"][h.name] = None
        inv = {
            "all": {
                "vars": {
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(ssh_key()),
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "opsrunner_lab": self.name,
                    "opsrunner_lab_repo_url": f"http://{net.bridge_address(st.octet)}:{st.port}",
                    **st.inventory_vars,
                },
                "hosts": {h.name: {"ansible_host": h.address} for h in st.hosts},
                "children": groups,
            }
        }
        path = Path(st.inventory)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "# Written by `opsrunner lab up` for lab " + self.name + "; do not edit.\n"
        text += yaml.safe_dump(inv, sort_keys=False, default_flow_style=False).replace(
            " null\n", "\n"
        )
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)

    def set_inventory_vars(self, values: dict[str, str | int | bool]) -> Path:
        """Add site variables for every host to the lab's inventory (kept across ``up``).

        For settings a site keeps in its inventory, e.g. ``vulnerability_scan_feed_mirror`` naming
        a feed published on the lab's web root. Policy parameters cannot be set this way (the
        policy's vars plugin wins over inventory variables); connection variables and the lab's
        own are refused. Returns the inventory path.
        """
        st = self._require_state()
        for name in values:
            if not _VAR_NAME.fullmatch(name) or name.startswith(("ansible_", "opsrunner_")):
                raise LabError(
                    f"inventory variable {name!r}: not a plain site variable "
                    "(ansible_* and opsrunner_* belong to the lab)"
                )
        st = st.model_copy(update={"inventory_vars": {**st.inventory_vars, **values}})
        self._save(st)
        self._write_inventory(st)
        return Path(st.inventory)

    # -- use -------------------------------------------------------------
    def ssh_args(self, host: str, connect_timeout: int = 5) -> list[str]:
        """The ssh command prefix for a host (root, lab key, no host-key checks, multiplexed)."""
        info = self.host(host)
        (self.dir / "cp").mkdir(exist_ok=True)
        return [
            "ssh",
            "-i",
            str(ssh_key()),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            f"ConnectTimeout={connect_timeout}",
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={self.dir}/cp/%C",
            "-o",
            "ControlPersist=60s",
            f"root@{info.address}",
        ]

    def ssh(
        self,
        host: str,
        cmd: str,
        *,
        timeout: float = 120.0,
        connect_timeout: int = 5,
        check: bool = False,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on a host as root; returns the CompletedProcess (text)."""
        try:
            proc = subprocess.run(
                [*self.ssh_args(host, connect_timeout), cmd],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            proc = subprocess.CompletedProcess(
                exc.cmd, 255, _text(exc.stdout), _text(exc.stderr) + "\ntimed out"
            )
        if check and proc.returncode != 0:
            raise LabError(f"{host}: `{cmd}` exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def boot_marker(self, host: str) -> str:
        """An id that changes on every boot of the host (see the module docstring)."""
        return self.ssh(host, "cat /run/opsrunner-boot-id", check=True).stdout.strip()

    def boots(self, host: str) -> int:
        """How often the supervisor started the host's container (1 + reboots since start/reset)."""
        f = self._hdir(host) / "boots"
        return len(f.read_text().splitlines()) if f.is_file() else 0

    def snapshot(self, host: str, exclude: tuple[str, ...] = ()) -> Snapshot:
        """Digest the host's persistent state: what its overlay upper dir changes from the image.

        Volatile paths (:data:`VOLATILE` plus ``exclude``) are left out, and so is what overlayfs
        copied up unchanged (a directory that only holds a volatile path, a file rewritten with
        the same content, mode and owner).
        """
        self.host(host)
        upper = self._hdir(host) / "upper"
        lower = self.image.rootfs
        skip = tuple(p.strip("/") for p in (*VOLATILE, *exclude))
        entries: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(upper):
            rel_dir = os.path.relpath(dirpath, upper)
            rel_dir = "" if rel_dir == "." else rel_dir
            dirnames[:] = [d for d in dirnames if not _skipped(f"{rel_dir}/{d}".lstrip("/"), skip)]
            for name in [*dirnames, *filenames]:
                rel = f"{rel_dir}/{name}".lstrip("/")
                if _skipped(rel, skip):
                    continue
                digest = _entry_digest(upper / rel)
                if digest != "deleted" and os.path.lexists(lower / rel):
                    with contextlib.suppress(OSError):
                        if _entry_digest(lower / rel) == digest:
                            continue
                entries[rel] = digest
        return Snapshot(host=host, entries=entries)

    # -- reset / stop ----------------------------------------------------
    @_system_umask
    def reset(self, host: str, *, wait: bool = True) -> None:
        """Stop the host, wipe its overlay upper dir, re-apply per-host setup, boot (seconds)."""
        st = self._require_state()
        info = self.host(host)
        self._stop_host(info, hard=True)
        self._umount(host)
        hdir = self._hdir(host)
        for d in ("upper", "work"):
            shutil.rmtree(hdir / d, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (hdir / "boots").unlink()
        # A fresh netns: no nftables rules, routes or sysctls from the last test survive.
        net.remove_host_net(self.name, host, info.index, st.octet)
        net.ensure_host_net(self.name, host, info.index, st.octet)
        self._start_host(info, st, self.repo)
        if wait:
            self.wait_ready(host)

    def reset_many(self, hosts: list[str] | None = None, *, wait: bool = True) -> None:
        """Reset several hosts (default: all); they boot in parallel."""
        names = hosts if hosts is not None else list(self.hosts)
        for h in names:
            self.host(h)  # unknown names fail before any host is touched
        for h in names:
            self.reset(h, wait=False)
        if wait:
            for h in names:
                self.wait_ready(h)

    @_system_umask
    def reboot(self, host: str, *, wait: bool = True, timeout: float = SSH_READY_TIMEOUT) -> None:
        """Reboot a host from inside (``systemctl reboot``) and wait until it answers again."""
        before = self.boot_marker(host)
        self.ssh(host, "systemctl reboot", timeout=10)
        self._close_masters(self.host(host))
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.ssh(host, "cat /run/opsrunner-boot-id", connect_timeout=2, timeout=5)
            if proc.returncode == 0 and proc.stdout.strip() and proc.stdout.strip() != before:
                self.wait_ready(host, timeout=max(5.0, deadline - time.monotonic()))
                return
            time.sleep(0.5)
        raise LabError(f"host {host} did not come back from a reboot within {timeout:.0f}s")

    def _close_masters(self, info: HostInfo) -> None:
        """End SSH ControlMasters to a host: ours, and Ansible's in ansible.cfg's control_path_dir.

        A master to a host that went away would hang the next command (~30 s) and would
        outlive ``lab down`` as a process. Ansible names its sockets sha1("host-port-user")[:10].
        """
        paths = [f"{self.dir}/cp/%C"]
        for port in ("None", "22"):
            digest = hashlib.sha1(f"{info.address}-{port}-root".encode()).hexdigest()[:10]  # noqa: S324
            paths.append(f"{ANSIBLE_CP_DIR}/{digest}")
        for cp in paths:
            if "%" not in cp and not Path(cp).exists():
                continue
            subprocess.run(
                ["ssh", "-o", f"ControlPath={cp}", "-O", "exit", f"root@{info.address}"],
                capture_output=True,
                check=False,
                timeout=10,
            )

    def _supervisor_pid(self, host: str) -> int | None:
        pidf = self._hdir(host) / "supervisor.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidf.read_text())
            if is_our_process(pid, "opsrunner.lab.supervisor"):
                return pid
        return None

    def _request_stop(self, info: HostInfo) -> None:
        """Ask a host to power off without waiting (so several hosts shut down at once)."""
        self._close_masters(info)
        pid = self._supervisor_pid(info.name)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _stop_host(
        self, info: HostInfo, timeout: float = 20.0, *, requested: bool = False, hard: bool = False
    ) -> None:
        """Power a host off (``hard``: kill it at once, for reset, whose disk is thrown away)."""
        if hard:
            self._close_masters(info)
            timeout = 0.0
        elif not requested:
            self._request_stop(info)
        pidf = self._hdir(info.name) / "supervisor.pid"
        pid = self._supervisor_pid(info.name)
        if pid:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        # Whatever is left in the host's cgroups (nspawn, container processes) goes now.
        for cg in self._cgroups(info.name):
            kill = cg / "cgroup.kill"  # cgroup v2: the whole subtree at once
            if kill.exists():
                with contextlib.suppress(OSError):
                    kill.write_text("1")
        for _ in range(50):
            pids = [p for cg in self._cgroups(info.name) for p in cgroup_pids(cg)]
            if not pids:
                break
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.1)
        for cg in self._cgroups(info.name):
            remove_cgroup_tree(cg)
        remove_nspawn_leftovers(info.machine, self._hdir(info.name) / "merged")
        with contextlib.suppress(FileNotFoundError):
            pidf.unlink()

    def _umount(self, host: str) -> None:
        merged = self._hdir(host) / "merged"
        for _ in range(20):
            if not os.path.ismount(merged):
                return
            subprocess.run(["umount", str(merged)], capture_output=True, check=False)
        if os.path.ismount(merged):
            subprocess.run(["umount", "-l", str(merged)], capture_output=True, check=False)

    def _destroy_host(self, info: HostInfo, octet: int | None, *, hard: bool = False) -> None:
        self._stop_host(info, hard=hard)
        self._umount(info.name)
        net.remove_host_net(self.name, info.name, info.index, octet)
        shutil.rmtree(self._hdir(info.name), ignore_errors=True)

    # -- down ------------------------------------------------------------
    def down(self, *, force: bool = False) -> list[str]:
        """Tear down what the lab made (``force``: also sweep by naming); returns what went."""
        removed: list[str] = []
        st = self.state()
        if st is None and not force:
            leftovers = net.lab_links(self.name) + net.lab_netns(self.name)
            if leftovers:
                raise LabError(
                    f"lab {self.name!r} has no state but leftovers "
                    f"({', '.join(leftovers)}): use --force"
                )
            return removed
        octet = st.octet if st else None
        if st is not None:
            stop_server(st.http_pid)
            # The hosts' disks are thrown away: kill them rather than wait for a clean shutdown.
            for info in st.hosts:
                self._destroy_host(info, octet, hard=True)
                removed.append(f"host {info.name}")
            inv = Path(st.inventory)
            with contextlib.suppress(FileNotFoundError):
                inv.unlink()
        if force:
            removed += self._sweep()
        net.remove_bridge(self.name)
        for root in CGROUP_ROOTS:
            remove_cgroup_tree(root / "opsrunner" / self.name)
            with contextlib.suppress(OSError):
                (
                    root / "opsrunner"
                ).rmdir()  # shared by every lab: only goes when the last lab has gone
        shutil.rmtree(self.dir, ignore_errors=True)
        return removed

    def _sweep(self) -> list[str]:
        """Remove a killed run's supervisors, nspawns, mounts, netns and veths by naming pattern."""
        removed: list[str] = []
        # machine <lab>-<host>: host names have no '-', so lab "a" never matches lab "a-b"
        machine = re.compile(rf"--machine={re.escape(self.name)}-[a-z0-9_]+(\s|$)")
        for pid, cmdline in _processes():
            if pid == os.getpid():
                continue
            if (
                ("opsrunner.lab.supervisor" in cmdline and f"{self.dir}/hosts/" in cmdline)
                or ("systemd-nspawn" in cmdline and machine.search(cmdline))
                or ("http.server" in cmdline and f"{self.dir}/www" in cmdline)
                or (cmdline.startswith("ssh: ") and f"{self.dir}/cp/" in cmdline)
            ):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                removed.append(f"process {pid}")
        for cg_root in (root / "opsrunner" / self.name for root in CGROUP_ROOTS):
            for p in cgroup_pids(cg_root):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        time.sleep(0.2)
        for merged in sorted((self.dir / "hosts").glob("*/merged")):
            remove_nspawn_leftovers(f"{self.name}-{merged.parent.name}", merged)
        prop = NSPAWN_RUN / "propagate"
        if prop.is_dir():
            for entry in prop.iterdir():
                # <lab>-<host>: host names have no '-', so another lab's machines do not match
                rest = entry.name.removeprefix(f"{self.name}-")
                if rest != entry.name and "-" not in rest:
                    remove_nspawn_leftovers(entry.name, Path("/nonexistent"))
                    removed.append(f"nspawn runtime dir {entry}")
        for mnt in _mounts_under(self.dir):
            subprocess.run(["umount", "-l", mnt], capture_output=True, check=False)
            removed.append(f"mount {mnt}")
        for ns in net.lab_netns(self.name):
            net.ip("netns", "del", ns, check=False)
            removed.append(f"netns {ns}")
        for link in net.lab_links(self.name):
            net.ip("link", "del", link, check=False)
            removed.append(f"link {link}")
        return removed


def all_labs() -> list[str]:
    """Names of labs with recorded state or leftovers on this machine."""
    names: set[str] = set()
    root = lab_root()
    if root.is_dir():
        # A lab's directory holds state.json or hosts/; others (ssh/) are not labs.
        names |= {
            d.name
            for d in root.iterdir()
            if d.is_dir()
            and net.NAME_RE.match(d.name)
            and d.name not in net.RESERVED
            and ((d / "state.json").exists() or (d / "hosts").exists())
        }
    for link in net.lab_links():
        if link.startswith("olb-"):
            names.add(link[4:])
    for ns in net.lab_netns():
        # opsrunner-<lab>-<host>: host names have no '-', lab names may.
        names.add(ns.removeprefix("opsrunner-").rsplit("-", 1)[0])
    for root_cg in CGROUP_ROOTS:
        d = root_cg / "opsrunner"
        if d.is_dir():
            names |= {c.name for c in d.iterdir() if c.is_dir()}
    return sorted(n for n in names if net.NAME_RE.match(n))


def _check_specs(specs: list[HostSpec]) -> None:
    seen: set[str] = set()
    for s in specs:
        if not net.NAME_RE.match(s.name.replace("_", "a")) or len(s.name) > 20:
            raise LabError(
                f"invalid host name {s.name!r}: lowercase letters, digits, '_'; "
                "starts with a letter"
            )
        if s.name in seen:
            raise LabError(f"duplicate host name {s.name!r}")
        seen.add(s.name)
        for g in s.groups:
            if not g.replace("_", "a").isalnum() or not g[0].isalpha():
                raise LabError(f"invalid group name {g!r} for host {s.name}")


def _skipped(rel: str, skip: tuple[str, ...]) -> bool:
    return any(rel == s or rel.startswith(s + "/") for s in skip)


def _entry_digest(path: Path) -> str:
    st = path.lstat()
    meta = f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid}"
    if stat.S_ISREG(st.st_mode):
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 16), b""):
                h.update(chunk)
        return f"{meta} {h.hexdigest()}"
    if stat.S_ISLNK(st.st_mode):
        return f"{meta} -> {path.readlink()}"
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return "deleted"  # overlayfs whiteout: the file was removed from the image
    if stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(OSError):
            if os.getxattr(path, "trusted.overlay.opaque") == b"y":
                return f"{meta} opaque"
    return meta


def _text(v: bytes | str | None) -> str:
    if v is None:
        return ""
    return v.decode(errors="replace") if isinstance(v, bytes) else v


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not count; it is reaped when it is our child)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def _processes() -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                out.append(
                    (
                        int(p.name),
                        (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"),
                    )
                )
    return out


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path) + "/"
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mnt = line.split()[1].replace("\\040", " ")
        if mnt.startswith(prefix):
            mounts.append(mnt)
    return sorted(mounts, key=len, reverse=True)
