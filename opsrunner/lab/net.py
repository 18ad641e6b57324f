"""Lab naming, subnets and bridge/netns/veth plumbing (``ip`` only; never routing or NAT)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import subprocess
from pathlib import Path

NAME_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,7}[a-z0-9])?$")
# Hosts get .11, .12, ... so the bridge (.1) and spare low addresses stay apart.
HOST_OFFSET = 10
#: Names of directories in the lab root that are not labs.
RESERVED = frozenset({"ssh"})
SUBNET_PREFIX = "10.233"


class LabError(RuntimeError):
    """A lab operation failed with a message meant for the user."""


def check_name(name: str) -> str:
    """Lab names become interface names (15 chars max), so they are short and plain."""
    if not NAME_RE.match(name):
        raise LabError(
            f"invalid lab name {name!r}: 1-9 characters, lowercase letters, digits and '-', "
            "starting with a letter"
        )
    if name in RESERVED:
        raise LabError(f"invalid lab name {name!r}: reserved (the lab keeps its SSH key there)")
    return name


def bridge_name(lab: str) -> str:
    """The per-lab bridge: ``olb-<lab>`` (at most 13 characters)."""
    return f"olb-{lab}"


def veth_name(lab: str, index: int) -> str:
    """The VM side of host ``index``'s veth pair: ``olv<lab>-<index>``."""
    return f"olv{lab}-{index}"


def netns_name(lab: str, host: str) -> str:
    """The network namespace of one host (``/run/netns/<name>``)."""
    return f"opsrunner-{lab}-{host}"


def mac_address(octet: int, index: int) -> str:
    """A fixed, locally administered MAC per lab subnet and host (no stale neighbour entries)."""
    return f"02:0a:e9:{octet:02x}:00:{index:02x}"


def subnet(octet: int) -> ipaddress.IPv4Network:
    """The lab's /24."""
    return ipaddress.IPv4Network(f"{SUBNET_PREFIX}.{octet}.0/24")


def bridge_address(octet: int) -> str:
    """The VM's address on the lab bridge (apt repository and HTTP server)."""
    return f"{SUBNET_PREFIX}.{octet}.1"


def host_address(octet: int, index: int) -> str:
    """Host ``index`` (1-based) address."""
    return f"{SUBNET_PREFIX}.{octet}.{HOST_OFFSET + index}"


def preferred_octet(lab: str) -> int:
    """A stable third octet from the name (20..249); a collision moves to the next free one."""
    return 20 + int(hashlib.sha256(lab.encode()).hexdigest(), 16) % 230


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip`` and turn a failure into a LabError naming the command."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def used_octets() -> set[int]:
    """Third octets of 10.233.X.0/24 networks already holding an address on this machine."""
    out = ip("-4", "-o", "addr", "show").stdout
    used = set()
    for m in re.finditer(rf"inet {re.escape(SUBNET_PREFIX)}\.(\d+)\.", out):
        used.add(int(m.group(1)))
    return used


def link_exists(name: str, netns: str | None = None) -> bool:
    """Whether a network interface exists (in the VM or in ``netns``)."""
    args = ["-n", netns] if netns else []
    return ip(*args, "link", "show", "dev", name, check=False).returncode == 0


def netns_exists(name: str) -> bool:
    """Whether ``/run/netns/<name>`` exists."""
    return Path("/run/netns", name).exists()


def ensure_bridge(lab: str, octet: int) -> None:
    """Create the lab bridge with the VM's address on it; no IPv6, no forwarding, no NAT."""
    br = bridge_name(lab)
    if not link_exists(br):
        ip("link", "add", br, "type", "bridge")
    _sysctl(f"net/ipv6/conf/{br}/disable_ipv6", "1")
    addr = f"{bridge_address(octet)}/24"
    if addr not in ip("-4", "-o", "addr", "show", "dev", br).stdout:
        ip("addr", "add", addr, "dev", br)
    ip("link", "set", br, "up")


def ensure_host_net(lab: str, host: str, index: int, octet: int) -> None:
    """Netns, veth into the bridge, fixed MAC, static address, lo; deliberately no default route."""
    ns = netns_name(lab, host)
    veth = veth_name(lab, index)
    if not netns_exists(ns):
        ip("netns", "add", ns)
    if not link_exists("eth0", ns):
        if link_exists(veth):
            ip("link", "del", veth)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _sysctl(f"net/ipv6/conf/{veth}/disable_ipv6", "1")
    ip("link", "set", veth, "master", bridge_name(lab), "up")
    ip("-n", ns, "link", "set", "eth0", "address", mac_address(octet, index))
    addr = f"{host_address(octet, index)}/24"
    if addr not in ip("-n", ns, "-4", "-o", "addr", "show", "dev", "eth0").stdout:
        ip("-n", ns, "addr", "add", addr, "dev", "eth0")
    ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", ns, "link", "set", "eth0", "up")


def remove_host_net(lab: str, host: str, index: int, octet: int | None) -> None:
    """Delete one host's veth pair, netns and neighbour entry (missing parts are fine)."""
    veth = veth_name(lab, index)
    if link_exists(veth):
        ip("link", "del", veth, check=False)
    ns = netns_name(lab, host)
    if netns_exists(ns):
        ip("netns", "del", ns, check=False)
    if octet is not None and link_exists(bridge_name(lab)):
        ip("neigh", "del", host_address(octet, index), "dev", bridge_name(lab), check=False)


def remove_bridge(lab: str) -> None:
    """Flush neighbours and delete the bridge."""
    br = bridge_name(lab)
    if link_exists(br):
        ip("neigh", "flush", "dev", br, check=False)
        ip("link", "del", br, check=False)


def lab_links(lab: str | None = None) -> list[str]:
    """Interfaces on the VM named like lab bridges/veths (of ``lab`` or of any lab)."""
    out = ip("-o", "link", "show").stdout
    names = [m.group(1) for m in re.finditer(r"^\d+: ([^:@]+)", out, re.M)]
    if lab is None:
        return [n for n in names if n.startswith(("olb-", "olv"))]
    return [n for n in names if n == bridge_name(lab) or re.fullmatch(rf"olv{lab}-\d+", n)]


def lab_netns(lab: str | None = None) -> list[str]:
    """Network namespaces named like a lab's (of ``lab`` or of any lab)."""
    d = Path("/run/netns")
    if not d.is_dir():
        return []
    prefix = f"opsrunner-{lab}-" if lab else "opsrunner-"
    return sorted(p.name for p in d.iterdir() if p.name.startswith(prefix))


def ip_forward() -> str:
    """The VM's ``net.ipv4.ip_forward`` (must stay "0")."""
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()


def nat_rules() -> list[str]:
    """Any NAT rule or chain in nftables or iptables-nft/legacy on the VM (must stay empty)."""
    found: list[str] = []
    proc = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        s = line.strip()
        if (
            "type nat" in s
            or s.startswith(("masquerade", "snat", "dnat"))
            or " masquerade" in s
            or " snat " in s
            or " dnat " in s
        ):
            found.append(s)
    for tool in ("iptables-save", "iptables-legacy-save"):
        proc = subprocess.run(
            ["sh", "-c", f"command -v {tool} >/dev/null && {tool} -t nat"],
            capture_output=True,
            text=True,
            check=False,
        )
        for line in proc.stdout.splitlines():
            if line.startswith("-A "):
                found.append(f"{tool}: {line}")
    return found


def _sysctl(key: str, value: str) -> None:
    p = Path("/proc/sys", key)
    if p.exists():
        p.write_text(value)
