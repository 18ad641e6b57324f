"""Per-host supervisor: systemd-nspawn in its own cgroup, started again after a reboot (133).

Started detached by :class:`opsrunner.lab.core.Lab` as
``python -m opsrunner.lab.supervisor <host-dir>``; ``<host-dir>/nspawn.json`` holds
the command line and the cgroup paths. SIGTERM powers the container off
(nspawn forwards it as a clean shutdown) and ends the supervisor; the cgroups
are removed when nspawn has gone. ``<host-dir>/boots`` counts boots, one line each.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

# systemd-nspawn's exit status when the container asked for a reboot.
REBOOT_STATUS = 133


def remove_cgroup_tree(path: Path) -> None:
    """Remove a cgroup directory and its children depth-first (rmdir only, as cgroupfs wants)."""
    if not path.is_dir():
        return
    for child in sorted(
        (p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        with contextlib.suppress(OSError):
            child.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


NSPAWN_RUN = Path("/run/systemd/nspawn")


def nspawn_leftovers(machine: str, directory: Path) -> list[Path]:
    """What nspawn leaves in /run after a container exits (it refuses to delete these itself).

    ``propagate/<machine>`` and the image lock ``locks/inode-<dev>:<ino>`` of the (still
    mounted) root directory; computed from ``directory`` so it must be called before umount.
    """
    found = [p for p in (NSPAWN_RUN / "propagate" / machine,) if p.exists()]
    with contextlib.suppress(OSError):
        st = directory.stat()
        lock = NSPAWN_RUN / "locks" / f"inode-{st.st_dev}:{st.st_ino}"
        if lock.exists():
            found.append(lock)
    return found


def remove_nspawn_leftovers(machine: str, directory: Path) -> None:
    """Delete nspawn's runtime leftovers of one container (it must have exited)."""
    for p in nspawn_leftovers(machine, directory):
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                for child in sorted(p.rglob("*"), key=lambda c: len(c.parts), reverse=True):
                    if child.is_dir() and not child.is_symlink():
                        child.rmdir()
                    else:
                        child.unlink()
                p.rmdir()
            else:
                p.unlink()


def cgroup_pids(path: Path) -> list[int]:
    """Every process in a cgroup tree."""
    pids: list[int] = []
    if not path.is_dir():
        return pids
    for procs in path.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.extend(int(x) for x in procs.read_text().split())
    return pids


def main(host_dir: str) -> int:
    """Supervise one host until SIGTERM or a non-reboot exit of nspawn."""
    hdir = Path(host_dir)
    spec = json.loads((hdir / "nspawn.json").read_text())
    cmd: list[str] = spec["cmd"]
    cgroups = [Path(p) for p in spec["cgroups"]]
    netns: str | None = spec.get("netns")
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    def enter_cgroups() -> None:
        # Runs in the child between fork and exec: nspawn (and the container) get
        # their own cgroups, or containers prune each other's (status=219/CGROUP).
        for cg in cgroups:
            (cg / "cgroup.procs").write_text("0")

    rc = 0
    while not stopping:
        for cg in cgroups:
            cg.mkdir(parents=True, exist_ok=True)
        if netns:
            # The netns outlives the container: kernel state a real reboot would lose
            # (nftables ruleset) goes here, or a firewall test would pass on stale rules.
            subprocess.run(["ip", "netns", "exec", netns, "nft", "flush", "ruleset"], check=False)
        with (hdir / "boots").open("a") as f:
            f.write(f"{time.time():.3f}\n")
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=enter_cgroups)
        (hdir / "nspawn.pid").write_text(str(child.pid))
        rc = child.wait()
        print(f"supervisor: nspawn exited with status {rc}", flush=True)
        # Leftovers of a container that died badly would keep the cgroup busy.
        for cg in cgroups:
            for pid in cgroup_pids(cg):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if rc != REBOOT_STATUS:
            break
        print("supervisor: container rebooted, starting it again", flush=True)
    time.sleep(0.2)
    for cg in cgroups:
        remove_cgroup_tree(cg)
    if "machine" in spec:
        remove_nspawn_leftovers(spec["machine"], Path(spec["directory"]))
    with contextlib.suppress(FileNotFoundError):
        (hdir / "nspawn.pid").unlink()
    return 0 if stopping else rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
