"""The lab's site pieces without a lab: inventory site variables, the feed, the lab CA."""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
import yaml

from opsrunner.lab import site
from opsrunner.lab.core import HostInfo, Lab, LabState
from opsrunner.lab.net import LabError


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    """A lab whose state exists on disk (nothing booted): enough to write its inventory."""
    monkeypatch.setenv("OPSRUNNER_LAB_DIR", str(tmp_path / "labs"))
    lab = Lab("u1")
    host = HostInfo(
        name="host2",
        index=2,
        address="10.233.50.12",
        mac="02:00:00:00:00:02",
        groups=("standard", "web"),
        machine="u1-host2",
    )
    state = LabState(
        name="u1",
        octet=50,
        image_key="k",
        port=8642,
        inventory=str(tmp_path / "hosts.yml"),
        hosts=(host,),
    )
    lab.dir.mkdir(parents=True)
    lab.state_file.write_text(state.model_dump_json())
    return lab


def test_site_variables_go_into_the_inventory_and_stay(lab: Lab) -> None:
    path = lab.set_inventory_vars({"vulnerability_scan_feed_mirror": "http://10.233.50.1:8642/f"})
    inv = yaml.safe_load(path.read_text())
    assert inv["all"]["vars"]["vulnerability_scan_feed_mirror"] == "http://10.233.50.1:8642/f"
    assert inv["all"]["vars"]["ansible_user"] == "root"  # the lab's own settings are kept
    assert inv["all"]["children"]["web"]["hosts"] == {"host2": None}
    # Recorded in the state, so the next `up` writes them again.
    lab._write_inventory(lab.state())  # type: ignore[arg-type]
    again = yaml.safe_load(path.read_text())
    assert again["all"]["vars"]["vulnerability_scan_feed_mirror"] == "http://10.233.50.1:8642/f"


@pytest.mark.parametrize("name", ["ansible_user", "opsrunner_lab", "Bad-Name"])
def test_connection_and_lab_variables_are_refused(lab: Lab, name: str) -> None:
    with pytest.raises(LabError, match="not a plain site variable"):
        lab.set_inventory_vars({name: "x"})


def test_a_state_file_from_before_site_variables_still_loads(lab: Lab) -> None:
    data = json.loads(lab.state_file.read_text())
    data.pop("inventory_vars", None)
    lab.state_file.write_text(json.dumps(data))
    assert lab.state() is not None and lab.state().inventory_vars == {}  # type: ignore[union-attr]


def test_the_feed_is_debsecan_version_1_naming_the_web_package() -> None:
    text = zlib.decompress(site.debsecan_feed()).decode()
    blocks = text.split("\n\n")
    assert blocks[0].splitlines()[0] == "VERSION 1"
    assert f"{site.WEB_CVE},,{site.WEB_PACKAGE}:" in blocks[0]
    # package, vulnerability index, flags (B: binary, H: high urgency, R: remote, F: fix), fixed
    assert f"{site.WEB_PACKAGE},0,BHRF,1.1," in blocks[1].splitlines()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_the_lab_ca_signs_a_server_certificate_for_the_host(lab: Lab) -> None:
    ca = site.make_ca(lab)
    assert ca.key.stat().st_mode & 0o077 == 0
    cert, key = site.issue_certificate(ca, "host2", "10.233.50.12")
    assert key.stat().st_mode & 0o077 == 0
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca.cert), str(cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    shown = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:host2" in shown and "IP Address:10.233.50.12" in shown, shown
    assert site.make_ca(lab).cert.read_bytes() == ca.cert.read_bytes()  # made once per lab
