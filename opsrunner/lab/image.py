"""The lab's root filesystem: built once with mmdebstrap, cached by package-list hash.

The package list below is the ONE place that decides what a lab host holds. Role
engineers ask for additions (``/work/brief/lab-package-requests.txt`` or the lab
owner); a change of the list changes the cache key, so the next ``lab up``
rebuilds the image (about a minute) and every later one reuses it.

Cache layout under :func:`opsrunner.paths.cache_dir` (``/var/cache/opsrunner``)::

    rootfs-<key>.tar.zst   the mmdebstrap output (kept, so an unpack needs no network)
    rootfs-<key>/          the unpacked tree, used read-only as every host's overlay lower dir
    debs-<key>/            every .deb apt downloaded for the image (served by the lab apt repo)
    rootfs.lock            serialises builds across concurrent ``lab up`` runs
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from opsrunner.paths import cache_dir

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# Bumped when the in-image customisation below changes (it is part of the cache key).
IMAGE_REVISION = "4"

#: Everything the roles need, pre-installed so hosts never need the internet.
PACKAGES: tuple[str, ...] = (
    # boot and base
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "iproute2",
    "procps",
    "less",
    "apt-utils",
    "ca-certificates",
    "curl",
    "gnupg",
    "kmod",
    "iputils-ping",
    # Ansible's needs on the managed side
    "python3",
    "python3-apt",
    "python3-systemd",
    "sudo",
    "acl",
    # remote access
    "openssh-server",
    "openssh-client",
    # the roles' concerns
    "nftables",
    "cron",
    "rsyslog",
    "logrotate",
    "libpam-pwquality",
    "auditd",
    "restic",
    "rsync",
    "prometheus-node-exporter",
    "fail2ban",
    "debsecan",
    "openssl",
    "unattended-upgrades",
    "chrony",
)


def package_list() -> list[str]:
    """The sorted, de-duplicated package list (the cache key is computed from it)."""
    return sorted(set(PACKAGES))


def image_key() -> str:
    """Short hash of suite, package list and customisation revision."""
    text = "\n".join([SUITE, IMAGE_REVISION, *package_list()])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Image:
    """Paths of one cached image."""

    key: str
    tarball: Path
    rootfs: Path
    debs: Path


def image_paths(key: str | None = None) -> Image:
    """Where the image with ``key`` (default: the current package list) lives."""
    key = key or image_key()
    base = cache_dir()
    return Image(key, base / f"rootfs-{key}.tar.zst", base / f"rootfs-{key}", base / f"debs-{key}")


# Customisation that is the same for every host; per-host files (hostname, keys,
# apt sources) are written into each host's overlay by opsrunner.lab.host.
_CUSTOMIZE = r"""
set -e
root="$1"
: > "$root/etc/machine-id"
rm -f "$root/etc/resolv.conf"; : > "$root/etc/resolv.conf"
rm -f "$root/etc/apt/sources.list"; rm -f "$root"/etc/apt/sources.list.d/*
mkdir -p "$root/etc/ssh/sshd_config.d"
printf 'UseDNS no\nPermitRootLogin prohibit-password\n' \
  > "$root/etc/ssh/sshd_config.d/opsrunner-lab.conf"
# boot_id is the VM's inside a container: a unit writes a fresh id per boot.
cat > "$root/etc/systemd/system/opsrunner-boot-marker.service" <<'EOF'
[Unit]
Description=Write a fresh per-boot id to /run/opsrunner-boot-id (lab reboot marker)
DefaultDependencies=no
After=local-fs.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'cat /proc/sys/kernel/random/uuid > /run/opsrunner-boot-id'
[Install]
WantedBy=sysinit.target
EOF
# The kernel serves audit only to the VM's initial namespaces: auditd can only fail in a
# container, so it is installed (roles configure it) but not started at boot.
rm -f "$root/etc/systemd/system/multi-user.target.wants/auditd.service"
ln -sf /etc/systemd/system/opsrunner-boot-marker.service \
  "$root/etc/systemd/system/sysinit.target.wants/opsrunner-boot-marker.service"
"""


class ImageError(RuntimeError):
    """The image could not be built (missing tool, mirror unreachable, ...)."""


def ensure_image(log: bool = True) -> Image:
    """Build (if the key is new) and unpack (if not yet) the image; safe to call concurrently."""
    img = image_paths()
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base / "rootfs.lock")):
        if not img.tarball.is_file():
            _build(img, log=log)
        if not (img.rootfs / "etc" / "os-release").exists():
            _unpack(img)
    return img


def _build(img: Image, log: bool) -> None:
    for tool in ("mmdebstrap", "zstd"):
        if shutil.which(tool) is None:
            raise ImageError(
                f"{tool} is missing: run scripts/bootstrap (it installs mmdebstrap and zstd)"
            )
    debs_tmp = img.debs.with_name(img.debs.name + ".tmp")
    shutil.rmtree(debs_tmp, ignore_errors=True)
    debs_tmp.mkdir(parents=True)
    with tempfile.TemporaryDirectory(dir=img.tarball.parent) as tmp:
        hook = Path(tmp) / "customize.sh"
        hook.write_text(_CUSTOMIZE)
        out = Path(tmp) / "rootfs.tar.zst"
        cmd = [
            "mmdebstrap",
            "--variant=minbase",
            "--mode=root",
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            "--include=" + ",".join(package_list()),
            "--skip=download/empty",
            "--skip=essential/unlink",
            '--aptopt=Acquire::Retries "3"',
            # keep every downloaded .deb for the lab's apt repository, then drop them from the image
            f"--customize-hook=sync-out /var/cache/apt/archives {debs_tmp}",
            '--customize-hook=rm -f "$1"/var/cache/apt/archives/*.deb',
            f'--customize-hook=sh {hook} "$1"',
            SUITE,
            str(out),
            MIRROR,
        ]
        proc = subprocess.run(cmd, capture_output=not log, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or "")[-2000:] if not log else "(see output above)"
            raise ImageError(f"mmdebstrap failed with status {proc.returncode}: {tail}")
        for junk in ("lock", "partial"):
            p = debs_tmp / junk
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        shutil.rmtree(img.debs, ignore_errors=True)
        debs_tmp.rename(img.debs)
        out.replace(img.tarball)


def _unpack(img: Image) -> None:
    tmp = img.rootfs.with_name(img.rootfs.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    subprocess.run(
        [
            "tar",
            "--zstd",
            "-xpf",
            str(img.tarball),
            "-C",
            str(tmp),
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
        ],
        check=True,
    )
    shutil.rmtree(img.rootfs, ignore_errors=True)
    tmp.rename(img.rootfs)


def prune_images(in_use: set[str]) -> list[Path]:
    """Delete cached images other than the current one and those in ``in_use`` or mounted.

    Returns the removed paths. A key still named in an overlay's lowerdir in /proc/mounts
    is kept even if no lab state names it (a lab of another checkout may run on it).
    """
    base = cache_dir()
    if not base.is_dir():
        return []
    mounts = Path("/proc/self/mounts").read_text()
    keep = {image_key(), *in_use}
    removed: list[Path] = []
    with FileLock(str(base / "rootfs.lock")):
        for p in sorted(base.iterdir()):
            for prefix in ("rootfs-", "debs-"):
                if not p.name.startswith(prefix):
                    continue
                key = p.name[len(prefix) :].split(".", 1)[0]
                if key in keep or f"rootfs-{key}" in mounts:
                    continue
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
                removed.append(p)
    return removed
