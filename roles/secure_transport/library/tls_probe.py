#!/usr/bin/python
"""Probe one TLS endpoint with real handshakes: protocols accepted and certificate validity."""

from __future__ import annotations

import datetime
import socket
import ssl
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: tls_probe
short_description: Handshake with a TLS endpoint once per protocol version and read its certificate
description:
  - Runs where it is delegated (the controller in secure_transport), opens real TCP connections
    to I(host):I(port) and performs TLS handshakes, one per protocol version from TLSv1 to TLSv1.3,
    with every cipher allowed (C(@SECLEVEL=0)) so that a server accepting an old protocol is
    seen even when the local defaults would refuse it.
  - Reads the server certificate of the best handshake and reports its validity.
  - Read-only; never changes anything, also in check mode.
options:
  host:
    description: Address or name to connect to.
    required: true
    type: str
  port:
    description: TCP port.
    required: true
    type: int
  server_name:
    description: SNI name to send (default the host).
    type: str
  min_version:
    description: Lowest protocol the endpoint may accept.
    type: str
    default: TLSv1.2
    choices:
      - TLSv1
      - TLSv1.1
      - TLSv1.2
      - TLSv1.3
  warn_days:
    description: The certificate must stay valid at least this many days.
    type: int
    default: 30
  timeout:
    description: Seconds per connection.
    type: float
    default: 5
"""

RETURN = r"""
reachable:
  description: A TCP connection was made.
  type: bool
  returned: always
accepted:
  description: Protocol versions the endpoint completed a handshake with.
  type: list
  returned: always
below_minimum:
  description: Accepted versions older than min_version.
  type: list
  returned: always
negotiated:
  description: Version chosen with no upper limit.
  type: str
  returned: always
certificate:
  description: subject
  issuer: null
  not_before: null
  not_after: null
  days_left: null
  expired.: null
  type: dict
  returned: when a handshake succeeded
protocol_summary:
  description: One line naming the accepted protocols.
  type: str
  returned: after a handshake
certificate_summary:
  description: One line naming the certificate and its end date.
  type: str
  returned: when a certificate was read
error:
  description: Why the probe could not complete (empty when it did).
  type: str
  returned: always
"""

_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_ORDER = list(_VERSIONS)


def _context(version: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # We judge the endpoint, not trust it: no verification, every cipher, every protocol.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = _VERSIONS[version] if version else ssl.TLSVersion.TLSv1
    if version:
        ctx.maximum_version = _VERSIONS[version]
    return ctx


def _handshake(
    host: str, port: int, sni: str, timeout: float, version: str | None
) -> tuple[str, bytes]:
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        _context(version).wrap_socket(raw, server_hostname=sni) as tls,
    ):
        return str(tls.version()), tls.getpeercert(binary_form=True) or b""


def _certificate(der: bytes, warn_days: int) -> dict[str, Any]:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    now = datetime.datetime.now(datetime.UTC)
    # cryptography < 42 (Debian 12's python3) has only the naive UTC attributes.
    utc = datetime.UTC
    not_after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(
        tzinfo=utc
    )
    not_before = getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before.replace(
        tzinfo=utc
    )
    days_left = (not_after - now).total_seconds() / 86400
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "days_left": round(days_left, 1),
        "expired": days_left < 0,
        "expiring": days_left < warn_days,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "required": True},
            "port": {"type": "int", "required": True},
            "server_name": {"type": "str"},
            "min_version": {"type": "str", "default": "TLSv1.2", "choices": _ORDER},
            "warn_days": {"type": "int", "default": 30},
            "timeout": {"type": "float", "default": 5.0},
        },
        supports_check_mode=True,
    )
    p = module.params
    host, port, timeout = p["host"], p["port"], p["timeout"]
    sni = p["server_name"] or host
    result: dict[str, Any] = {
        "changed": False,
        "endpoint": f"{host}:{port}",
        "reachable": False,
        "accepted": [],
        "below_minimum": [],
        "negotiated": "",
        "certificate": {},
        "error": "",
    }
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        result["error"] = f"cannot connect to {host}:{port}: {exc}"
        module.exit_json(**result)
    result["reachable"] = True
    der = b""
    for version in _ORDER:
        try:
            got, cert = _handshake(host, port, sni, timeout, version)
        except (ssl.SSLError, OSError):
            continue
        result["accepted"].append(got)
        der = cert or der
    try:
        result["negotiated"], best = _handshake(host, port, sni, timeout, None)
        der = best or der
    except (ssl.SSLError, OSError) as exc:
        result["error"] = f"no TLS handshake with {host}:{port}: {exc}"
        module.exit_json(**result)
    floor = _ORDER.index(p["min_version"])
    result["below_minimum"] = [v for v in result["accepted"] if _ORDER.index(v) < floor]
    endpoint = result["endpoint"]
    weak = result["below_minimum"]
    result["protocol_summary"] = (
        f"{endpoint} accepts {', '.join(weak)} (older than {p['min_version']})"
        if weak
        else f"{endpoint} accepts {', '.join(result['accepted'])}"
    )
    if not der:
        result["error"] = f"{endpoint} sent no certificate"
        module.exit_json(**result)
    info = result["certificate"] = _certificate(der, p["warn_days"])
    state = (
        "EXPIRED"
        if info["expired"]
        else f"expires within {p['warn_days']} days"
        if info["expiring"]
        else "valid"
    )
    result["certificate_summary"] = (
        f"{endpoint} certificate {info['subject']} not after "
        f"{info['not_after']} ({info['days_left']} days left, {state})"
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
