"""Snapshots digest persistent state only, image packages list is one place (no root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsrunner.lab import core, image
from opsrunner.lab.core import HostInfo, Lab, LabState


@pytest.fixture
def fake_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    monkeypatch.setenv("OPSRUNNER_LAB_DIR", str(tmp_path))
    monkeypatch.setenv("OPSRUNNER_CACHE_DIR", str(tmp_path / "cache"))
    lower = tmp_path / "cache" / "rootfs-k"
    for d in ("etc", "var/log", "root"):
        (lower / d).mkdir(parents=True)
    (lower / "etc" / "issue").write_text("Debian\n")
    lab = Lab("unit")
    host = HostInfo(
        name="host1",
        index=1,
        address="10.233.50.11",
        mac="02:0a:e9:32:00:01",
        groups=("critical",),
        machine="unit-host1",
    )
    lab._save(
        LabState(
            name="unit",
            octet=50,
            image_key="k",
            port=8642,
            inventory=str(tmp_path / "inv.yml"),
            hosts=(host,),
        )
    )
    upper = tmp_path / "unit" / "hosts" / "host1" / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "motd").write_text("hello\n")
    (upper / "var" / "log").mkdir(parents=True)
    (upper / "var" / "log" / "syslog").write_text("noise\n")
    return lab


def test_snapshot_ignores_volatile_paths_and_sees_content_mode_and_links(fake_lab: Lab) -> None:
    upper = fake_lab.dir / "hosts" / "host1" / "upper"
    first = fake_lab.snapshot("host1")
    assert "etc/motd" in first.entries
    assert not any(k.startswith("var/log") for k in first.entries)
    (upper / "var" / "log" / "syslog").write_text("more noise\n")
    (upper / "root" / ".ansible" / "tmp").mkdir(parents=True)
    assert fake_lab.snapshot("host1") == first
    (upper / "etc" / "motd").chmod(0o600)
    second = fake_lab.snapshot("host1")
    assert second != first and list(first.diff(second)) == ["etc/motd"]
    (upper / "etc" / "issue").write_text("Debian\n")  # copied up, unchanged
    assert fake_lab.snapshot("host1") == second
    (upper / "etc" / "issue").write_text("Changed\n")
    assert "etc/issue" in fake_lab.snapshot("host1").entries
    (upper / "etc" / "issue").unlink()
    (upper / "etc" / "link").symlink_to("/etc/motd")
    third = fake_lab.snapshot("host1")
    assert "-> /etc/motd" in third.entries["etc/link"]
    assert third.digest != second.digest
    assert fake_lab.snapshot("host1", exclude=("etc/link",)) == second


def test_inventory_has_hosts_groups_key_and_repo(fake_lab: Lab, tmp_path: Path) -> None:
    st = fake_lab.state()
    assert st is not None
    fake_lab._write_inventory(st)
    text = (tmp_path / "inv.yml").read_text()
    import yaml

    inv = yaml.safe_load(text)["all"]
    assert inv["hosts"] == {"host1": {"ansible_host": "10.233.50.11"}}
    assert inv["children"] == {"critical": {"hosts": {"host1": None}}}
    assert inv["vars"]["ansible_user"] == "root"
    assert inv["vars"]["ansible_ssh_private_key_file"] == str(core.ssh_key())
    assert inv["vars"]["opsrunner_lab_repo_url"] == "http://10.233.50.1:8642"
    mtime = (tmp_path / "inv.yml").stat().st_mtime_ns
    fake_lab._write_inventory(st)
    assert (tmp_path / "inv.yml").stat().st_mtime_ns == mtime, (
        "idempotent: unchanged file untouched"
    )


def test_unknown_host_error_lists_the_hosts(fake_lab: Lab) -> None:
    with pytest.raises(core.LabError, match=r"no host 'host9' \(hosts: host1\)"):
        fake_lab.snapshot("host9")


def test_image_key_follows_the_package_list(monkeypatch: pytest.MonkeyPatch) -> None:
    key = image.image_key()
    assert key == image.image_key()
    for needed in ("openssh-server", "python3-apt", "nftables", "auditd", "restic", "debsecan"):
        assert needed in image.package_list()
    monkeypatch.setattr(image, "PACKAGES", (*image.PACKAGES, "tree"))
    assert image.image_key() != key


def test_prune_keeps_the_current_and_used_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSRUNNER_CACHE_DIR", str(tmp_path))
    current = image.image_key()
    for key in (current, "usedbyalab00", "oldunused000"):
        (tmp_path / f"rootfs-{key}").mkdir()
        (tmp_path / f"rootfs-{key}.tar.zst").write_text("x")
        (tmp_path / f"debs-{key}").mkdir()
        (tmp_path / f"debs-{key}.Packages").write_text("x")
    removed = image.prune_images({"usedbyalab00"})
    assert sorted(p.name for p in removed) == [
        "debs-oldunused000",
        "debs-oldunused000.Packages",
        "rootfs-oldunused000",
        "rootfs-oldunused000.tar.zst",
    ]
    assert (tmp_path / f"rootfs-{current}").is_dir()
    assert (tmp_path / "rootfs-usedbyalab00.tar.zst").is_file()
