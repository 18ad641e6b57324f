"""The lab's local apt repository and web root, served over HTTP on the lab bridge address only.

Layout of a lab's web root (``<lab dir>/www``), served at ``http://<bridge>:<port>/``::

    debian/pool/base -> the image's downloaded .debs (every package the image holds)
    debian/pool/<suite>/*.deb        packages published by the lab or by tests
    debian/dists/<suite>/Release     ``bookworm`` (Origin Debian, Label Debian) and
                                     ``bookworm-security`` (Label Debian-Security: the
                                     origin unattended-upgrades' default pattern matches)
    <anything else>                  files published with :meth:`Repo.publish_file`

Hosts' apt sources point only at this repository (``[trusted=yes]``). After a
publish, hosts see the change after ``apt-get update``.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from filelock import FileLock

from opsrunner.lab.image import Image
from opsrunner.lab.net import LabError

SUITES: dict[str, dict[str, str]] = {
    "bookworm": {
        "Origin": "Debian",
        "Label": "Debian",
        "Suite": "bookworm",
        "Codename": "bookworm",
    },
    "bookworm-security": {
        "Origin": "Debian",
        "Label": "Debian-Security",
        "Suite": "bookworm-security",
        "Codename": "bookworm-security",
    },
}
DEFAULT_PORT = 8642
#: Dummy packages every lab publishes: (name, version, suite).
DEMO_PACKAGES: tuple[tuple[str, str, str], ...] = (
    ("opsdemo-base", "1.0", "bookworm"),
    ("opsdemo-base", "1.1", "bookworm"),
    ("opsdemo-web", "1.0", "bookworm"),
    ("opsdemo-web", "1.1", "bookworm-security"),
)


def build_deb(
    name: str,
    version: str,
    outdir: Path,
    *,
    depends: str = "",
    description: str = "opsrunner lab dummy package",
    files: dict[str, str] | None = None,
) -> Path:
    """Build ``<name>_<version>_all.deb`` with dpkg-deb; ``files`` maps absolute paths to contents.

    Without ``files`` the package ships ``/usr/share/opsdemo/<name>/VERSION`` holding the version,
    so a test can read which version is installed.
    """
    if shutil.which("dpkg-deb") is None:
        raise LabError("dpkg-deb is missing: run scripts/bootstrap (it installs dpkg-dev)")
    files = files if files is not None else {f"/usr/share/opsdemo/{name}/VERSION": f"{version}\n"}
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "DEBIAN").mkdir()
        control = [
            f"Package: {name}",
            f"Version: {version}",
            "Architecture: all",
            "Maintainer: opsrunner lab <lab@opsrunner.invalid>",
            "Section: misc",
            "Priority: optional",
        ]
        if depends:
            control.append(f"Depends: {depends}")
        control.append(f"Description: {description}")
        (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
        for path, content in files.items():
            dest = root / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(content)
        out = outdir / f"{name}_{version}_all.deb"
        proc = subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise LabError(f"dpkg-deb failed for {name} {version}: {proc.stderr.strip()}")
    return out


class Repo:
    """One lab's web root and apt repository."""

    def __init__(self, www: Path, image: Image, address: str, port: int) -> None:
        self.www = www
        self.image = image
        self.address = address
        self.port = port

    @property
    def url(self) -> str:
        """Base URL of the web root, e.g. ``http://10.233.40.1:8642``."""
        return f"http://{self.address}:{self.port}"

    @property
    def apt_url(self) -> str:
        """Base URL of the apt repository (``deb [trusted=yes] <apt_url> bookworm main``)."""
        return f"{self.url}/debian"

    def sources_list(self) -> str:
        """The apt sources every lab host gets: this repository only."""
        return "".join(f"deb [trusted=yes] {self.apt_url} {suite} main\n" for suite in SUITES)

    @property
    def debian(self) -> Path:
        """Root of the apt repository."""
        return self.www / "debian"

    # -- building --------------------------------------------------------
    def build(self) -> None:
        """Create the web root, link the image's .debs, publish the demo packages, index suites."""
        pool = self.debian / "pool"
        pool.mkdir(parents=True, exist_ok=True)
        base = pool / "base"
        if base.is_symlink() or base.exists():
            base.unlink()
        base.symlink_to(self.image.debs)
        for name, version, suite in DEMO_PACKAGES:
            target = pool / suite / f"{name}_{version}_all.deb"
            if not target.exists():
                build_deb(name, version, pool / suite)
        for suite in SUITES:
            self.index(suite)

    def _base_packages(self) -> str:
        """The image's Packages index, computed once per image key (a scan takes seconds)."""
        cached = self.image.debs.with_name(self.image.debs.name + ".Packages")
        with FileLock(str(cached) + ".lock"):
            if not cached.is_file():
                text = _ftparchive(["packages", "pool/base/"], cwd=self.debian)
                tmp = cached.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(cached)
        return cached.read_text()

    def index(self, suite: str) -> None:
        """(Re)write Packages, Packages.gz and Release of one suite."""
        if suite not in SUITES:
            raise LabError(f"unknown suite {suite!r}: one of {', '.join(SUITES)}")
        pool = self.debian / "pool" / suite
        pool.mkdir(parents=True, exist_ok=True)
        text = self._base_packages() if suite == "bookworm" else ""
        if any(pool.glob("*.deb")):
            text += _ftparchive(["packages", f"pool/{suite}"], cwd=self.debian)
        bdir = self.debian / "dists" / suite / "main" / "binary-amd64"
        bdir.mkdir(parents=True, exist_ok=True)
        (bdir / "Packages").write_text(text)
        with gzip.open(bdir / "Packages.gz", "wt") as f:
            f.write(text)
        meta = SUITES[suite]
        opts = [f"-oAPT::FTPArchive::Release::{k}={v}" for k, v in meta.items()]
        opts += [
            "-oAPT::FTPArchive::Release::Components=main",
            "-oAPT::FTPArchive::Release::Architectures=amd64 all",
        ]
        with contextlib.suppress(FileNotFoundError):
            (self.debian / "dists" / suite / "Release").unlink()
        release = _ftparchive([*opts, "release", f"dists/{suite}"], cwd=self.debian)
        (self.debian / "dists" / suite / "Release").write_text(release)

    # -- publishing ------------------------------------------------------
    def publish_package(
        self,
        name: str,
        version: str,
        suite: str = "bookworm",
        *,
        depends: str = "",
        files: dict[str, str] | None = None,
    ) -> Path:
        """Build a dummy package version into ``suite`` and re-index (hosts: ``apt-get update``)."""
        if suite not in SUITES:
            raise LabError(f"unknown suite {suite!r}: one of {', '.join(SUITES)}")
        deb = build_deb(name, version, self.debian / "pool" / suite, depends=depends, files=files)
        self.index(suite)
        return deb

    def unpublish_package(self, name: str, version: str, suite: str = "bookworm") -> None:
        """Remove one published version and re-index the suite."""
        with contextlib.suppress(FileNotFoundError):
            (self.debian / "pool" / suite / f"{name}_{version}_all.deb").unlink()
        self.index(suite)

    def publish_file(self, relpath: str, content: str | bytes | Path) -> str:
        """Put a file in the web root (e.g. a vulnerability feed) and return its URL."""
        rel = Path(relpath.lstrip("/"))
        if ".." in rel.parts or rel.parts[:1] == ("debian",):
            raise LabError(
                f"publish_file: {relpath!r} must stay inside the web root and outside debian/"
            )
        dest = self.www / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, dest)
        elif isinstance(content, bytes):
            dest.write_bytes(content)
        else:
            dest.write_text(content)
        return f"{self.url}/{rel.as_posix()}"

    # -- serving ---------------------------------------------------------
    def start_server(self, log: Path) -> int:
        """Start the HTTP server on the bridge address only; returns its pid."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((self.address, self.port))
            except OSError as exc:
                raise LabError(
                    f"cannot serve the lab repository on {self.address}:{self.port}: "
                    f"{exc.strerror} "
                    "(port or address already in use; another process or a stale lab? "
                    "`opsrunner lab down --force --name <lab>`)"
                ) from exc
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "http.server",
                    "--bind",
                    self.address,
                    "--directory",
                    str(self.www),
                    str(self.port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LabError(
                    f"the lab HTTP server exited at start (status {proc.returncode}); see {log}"
                )
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                if s.connect_ex((self.address, self.port)) == 0:
                    return proc.pid
            time.sleep(0.1)
        raise LabError(
            f"the lab HTTP server did not listen on {self.address}:{self.port}; see {log}"
        )


def stop_server(pid: int | None) -> None:
    """Stop the HTTP server if it is still ours (a python http.server process)."""
    if not pid or not is_our_process(pid, "http.server"):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def is_our_process(pid: int, marker: str) -> bool:
    """Whether ``pid`` runs and its command line contains ``marker`` (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def _ftparchive(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(
        ["apt-ftparchive", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise LabError(f"apt-ftparchive {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout
