"""Lab names, interface names, subnets, host specs and spec-file errors (no root needed)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from opsrunner.lab import net
from opsrunner.lab.cli import _load_spec, _parse_host
from opsrunner.lab.core import DEFAULT_GROUPS, HostSpec, _check_specs, default_hosts
from opsrunner.lab.net import LabError


@pytest.mark.parametrize("name", ["a", "lab", "lab-dev", "t1234567", "fw", "m12345678"])
def test_valid_names_give_interface_names_within_15_chars(name: str) -> None:
    assert net.check_name(name) == name
    assert len(net.bridge_name(name)) <= 15
    assert len(net.veth_name(name, 50)) <= 15


@pytest.mark.parametrize(
    "name", ["", "Lab", "1lab", "lab_dev", "toolongname", "lab-", "a b", "ssh"]
)
def test_invalid_names_are_refused_with_the_name_in_the_message(name: str) -> None:
    with pytest.raises(LabError, match=f"invalid lab name '{name}'"):
        net.check_name(name)


def test_all_labs_never_counts_the_key_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opsrunner.lab.core import all_labs

    monkeypatch.setenv("OPSRUNNER_LAB_DIR", str(tmp_path))
    (tmp_path / "ssh").mkdir()
    (tmp_path / "stray").mkdir()
    (tmp_path / "mine" / "hosts").mkdir(parents=True)
    assert "ssh" not in all_labs() and "stray" not in all_labs()
    assert "mine" in all_labs()


def test_interface_names_of_two_labs_never_collide() -> None:
    # "a" host 11 vs "a1" host 1 would collide without the separator
    assert net.veth_name("a", 11) != net.veth_name("a1", 1)
    assert net.bridge_name("b") not in {net.veth_name("b", i) for i in range(1, 51)}


def test_addresses_and_macs_are_fixed_per_lab_and_host() -> None:
    octet = net.preferred_octet("lab-dev")
    assert octet == net.preferred_octet("lab-dev")
    assert 20 <= octet < 250
    assert net.host_address(octet, 1) == f"10.233.{octet}.11"
    assert net.bridge_address(octet) == f"10.233.{octet}.1"
    assert ipaddress.ip_address(net.host_address(octet, 1)) in net.subnet(octet)
    assert net.mac_address(octet, 1) == net.mac_address(octet, 1)
    assert net.mac_address(octet, 1) != net.mac_address(octet, 2)
    assert int(net.mac_address(octet, 1).split(":")[0], 16) & 0b10, "locally administered"


def test_default_hosts_have_the_policy_groups() -> None:
    hosts = default_hosts(4)
    assert [h.name for h in hosts] == ["host1", "host2", "host3", "host4"]
    assert hosts[0].groups == ("critical", "db") == DEFAULT_GROUPS[1]
    assert hosts[1].groups == ("standard", "web")
    assert hosts[2].groups == ("standard", "backup_target")
    assert hosts[3].groups == ("standard",)
    with pytest.raises(LabError, match=r"1\.\.50"):
        default_hosts(0)


def test_host_argument_and_checks() -> None:
    assert _parse_host("web1:web, standard") == HostSpec(name="web1", groups=("web", "standard"))
    assert _parse_host("solo") == HostSpec(name="solo", groups=())
    with pytest.raises(LabError, match="duplicate host name 'a'"):
        _check_specs([HostSpec(name="a"), HostSpec(name="a")])
    with pytest.raises(LabError, match="invalid group name 'bad-group' for host a"):
        _check_specs([HostSpec(name="a", groups=("bad-group",))])
    with pytest.raises(LabError, match="invalid host name 'Host1'"):
        _check_specs([HostSpec(name="Host1")])


def test_spec_file_errors_name_file_and_field(tmp_path: Path) -> None:
    good = tmp_path / "hosts.yml"
    good.write_text("hosts:\n  - name: db1\n    groups: [critical, db]\n  - {name: web1}\n")
    assert _load_spec(good) == [
        HostSpec(name="db1", groups=("critical", "db")),
        HostSpec(name="web1", groups=()),
    ]
    bad = tmp_path / "bad.yml"
    bad.write_text("- name: db1\n  groupz: [db]\n")
    with pytest.raises(LabError, match=r"bad\.yml:1: hosts\[0\]\.groupz: Extra inputs"):
        _load_spec(bad)
    worse = tmp_path / "worse.yml"
    worse.write_text("just text\n")
    with pytest.raises(LabError, match=r"worse\.yml: expected a list of hosts"):
        _load_spec(worse)
