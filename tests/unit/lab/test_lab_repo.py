"""The lab apt repository: dummy packages, suites and the security origin (no root, no lab)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from opsrunner.lab.image import Image
from opsrunner.lab.net import LabError
from opsrunner.lab.repo import Repo, build_deb

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None or shutil.which("apt-ftparchive") is None,
    reason="needs dpkg-deb and apt-ftparchive (scripts/bootstrap installs them)",
)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    debs = tmp_path / "cache" / "debs-test"
    build_deb("imagepkg", "3.0", debs)
    image = Image("test", tmp_path / "cache" / "x.tar.zst", tmp_path / "cache" / "rootfs", debs)
    r = Repo(tmp_path / "www", image, "10.233.99.1", 8642)
    r.build()
    return r


def _field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_build_deb_has_name_version_and_version_file(tmp_path: Path) -> None:
    deb = build_deb("opsdemo-x", "1.1", tmp_path, depends="bash")
    assert deb.name == "opsdemo-x_1.1_all.deb"
    assert _field(deb, "Version") == "1.1"
    assert _field(deb, "Depends") == "bash"
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    assert "./usr/share/opsdemo/opsdemo-x/VERSION" in listing


def _packages(repo: Repo, suite: str) -> set[tuple[str, str, str]]:
    """(package, version, filename) of every stanza of a suite's Packages index."""
    text = (repo.debian / "dists" / suite / "main/binary-amd64/Packages").read_text()
    found = set()
    for stanza in text.strip().split("\n\n"):
        if not stanza.strip():
            continue
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line)
        found.add((fields["Package"], fields["Version"], fields["Filename"]))
    return found


def test_suites_hold_image_and_demo_packages(repo: Repo) -> None:
    main = _packages(repo, "bookworm")
    sec = _packages(repo, "bookworm-security")
    assert ("imagepkg", "3.0", "pool/base/imagepkg_3.0_all.deb") in main, "the image's .debs"
    wanted = {("opsdemo-base", "1.0"), ("opsdemo-base", "1.1"), ("opsdemo-web", "1.0")}
    assert wanted <= {(p, v) for p, v, _ in main}
    assert {(p, v) for p, v, _ in sec} == {("opsdemo-web", "1.1")}


def test_security_suite_release_matches_unattended_upgrades_origin(repo: Repo) -> None:
    rel = (repo.debian / "dists/bookworm-security/Release").read_text()
    assert "Origin: Debian" in rel
    assert "Label: Debian-Security" in rel
    assert "Codename: bookworm-security" in rel
    assert "main/binary-amd64/Packages" in rel
    main_rel = (repo.debian / "dists/bookworm/Release").read_text()
    assert "Label: Debian\n" in main_rel and "Codename: bookworm\n" in main_rel


def test_publish_package_and_file(repo: Repo) -> None:
    repo.publish_package("opsdemo-new", "2.0", "bookworm-security")
    assert ("opsdemo-new", "2.0") in {(p, v) for p, v, _ in _packages(repo, "bookworm-security")}
    repo.unpublish_package("opsdemo-new", "2.0", "bookworm-security")
    assert "opsdemo-new" not in {p for p, _, _ in _packages(repo, "bookworm-security")}
    url = repo.publish_file("feeds/cve.json", "{}")
    assert url == "http://10.233.99.1:8642/feeds/cve.json"
    assert (repo.www / "feeds/cve.json").read_text() == "{}"
    with pytest.raises(LabError, match="inside the web root"):
        repo.publish_file("../escape", "x")
    with pytest.raises(LabError, match="unknown suite 'sid'"):
        repo.publish_package("x", "1", "sid")


def test_sources_list_points_only_at_the_lab(repo: Repo) -> None:
    assert repo.sources_list().splitlines() == [
        "deb [trusted=yes] http://10.233.99.1:8642/debian bookworm main",
        "deb [trusted=yes] http://10.233.99.1:8642/debian bookworm-security main",
    ]
