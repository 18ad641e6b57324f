"""What a lab serves so that an audit of it finds only real findings: the demo's lab site.

The policy describes a company site: a vulnerability feed on the internet (Debian's tracker), a
TLS endpoint on every ``web`` host, web content under ``/srv/www`` backed up as the ``web``
set. A bare lab has none of these, so an audit reports lab artefacts (errors and failures no
operator would see on a real site). This module gives a lab those things for real, on the lab
bridge only, without touching the policy:

* :func:`publish_feed` — a debsecan feed (format ``VERSION 1``, zlib) on the lab's web root,
  named by the lab's inventory as ``vulnerability_scan_feed_mirror`` (a site setting; the policy
  keeps the real feed URL, and the evidence names both).
* :func:`make_ca` / :func:`serve_tls` — a lab CA made with openssl on the controller, a server
  certificate for a host signed by it, and an HTTPS service on the host (python3's ``ssl``, in
  the image) serving ``/srv/www`` with TLS 1.2 as the oldest protocol.
* :func:`install_web_content` — the web application: ``opsdemo-web`` 1.0 from the lab's apt
  repository (the feed names a CVE it has, fixed in 1.1 in ``bookworm-security``) and pages
  under ``/srv/www``.
* :func:`install_db_content` — a db host's application database and the policy's sensitive
  data path (``/var/lib/postgresql``, ENC-001).
* :func:`plant_departed_user` — an account of a person the roster says has left, as it looked
  while they worked there (groups, SSH key, crontab): what account_cleanup must disable.
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

from opsrunner.lab.core import Lab
from opsrunner.lab.net import LabError

#: Where the feed lives in the lab's web root; debsecan appends the suite.
FEED_DIR = "feeds/debsecan"
FEED_VAR = "vulnerability_scan_feed_mirror"
#: The feed's one fixable finding: the web application before 1.1.
WEB_CVE = "CVE-2026-41001"
WEB_PACKAGE = "opsdemo-web"
TLS_DIR = "/etc/ssl/opsrunner-lab"
TLS_UNIT = "opsrunner-lab-https.service"
WEB_ROOT = "/srv/www"


def debsecan_feed() -> bytes:
    """A debsecan feed naming the lab's dummy packages (the image's Debian packages: none).

    opsdemo-web before 1.1 has a high-urgency, remotely exploitable CVE fixed in 1.1;
    opsdemo-base has a low one without a fix.
    """
    text = (
        "VERSION 1\n"
        f"{WEB_CVE},,{WEB_PACKAGE}: remote code execution in the demo request parser\n"
        "CVE-2026-41002,,opsdemo-base: information leak, no fix yet\n"
        "\n"
        f"{WEB_PACKAGE},0,BHRF,1.1,\n"
        "opsdemo-base,1,BL? ,,\n"
        "\n"
        f"{WEB_PACKAGE},{WEB_PACKAGE}\n"
        "opsdemo-base,opsdemo-base\n"
        "\n"
    )
    return zlib.compress(text.encode())


def publish_feed(lab: Lab, suite: str = "bookworm") -> str:
    """Publish the feed on the lab's web root and name it in the lab's inventory; returns its base.

    The base URL is what debsecan is given (it appends ``/<suite>``); it is on the lab bridge.
    """
    url = lab.repo.publish_file(f"{FEED_DIR}/{suite}", debsecan_feed())
    base = url.rsplit("/", 1)[0]
    lab.set_inventory_vars({FEED_VAR: base})
    return base


@dataclass(frozen=True)
class LabCA:
    """A lab certificate authority on the controller (key never leaves the lab directory)."""

    directory: Path

    @property
    def cert(self) -> Path:
        """The CA certificate (PEM)."""
        return self.directory / "ca.crt"

    @property
    def key(self) -> Path:
        """The CA's private key (PEM, 0600)."""
        return self.directory / "ca.key"


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"openssl {args[0]} failed: {proc.stderr.strip()[-500:]}")


def make_ca(lab: Lab, days: int = 365) -> LabCA:
    """The lab's CA under ``<lab dir>/ca`` (made once per lab; goes with ``lab down``)."""
    ca = LabCA(lab.dir / "ca")
    if ca.cert.is_file() and ca.key.is_file():
        return ca
    ca.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(ca.key),
        "-out",
        str(ca.cert),
        "-days",
        str(days),
        "-subj",
        f"/O=opsrunner lab/CN=opsrunner lab {lab.name} CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=ca.directory,
    )
    ca.key.chmod(0o600)
    return ca


def issue_certificate(ca: LabCA, name: str, address: str, days: int = 90) -> tuple[Path, Path]:
    """A server certificate for ``name`` / ``address`` signed by the lab CA: (cert, key)."""
    out = ca.directory / name
    out.mkdir(mode=0o700, exist_ok=True)
    key, csr, cert = out / "server.key", out / "server.csr", out / "server.crt"
    ext = out / "ext.cnf"
    ext.write_text(
        f"subjectAltName=DNS:{name},IP:{address}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        f"/O=opsrunner lab/CN={name}",
        cwd=out,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca.cert),
        "-CAkey",
        str(ca.key),
        "-CAcreateserial",
        "-days",
        str(days),
        "-extfile",
        str(ext),
        "-out",
        str(cert),
        cwd=out,
    )
    key.chmod(0o600)
    return cert, key


#: The HTTPS service on a lab host: python3's http.server behind an ssl context whose oldest
#: protocol is TLS 1.2 (the policy's secure_transport_tls_min_version).
HTTPS_SERVER = """\
import functools, http.server, ssl, sys
port, root, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
ctx.load_cert_chain(cert, key)
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
server = http.server.ThreadingHTTPServer(("", port), handler)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def serve_tls(lab: Lab, host: str, ca: LabCA, port: int = 443) -> str:
    """Install a CA-signed certificate on ``host`` and serve ``/srv/www`` over HTTPS on ``port``.

    Returns the endpoint ``address:port``; raises LabError when the service does not answer.
    """
    info = lab.host(host)
    cert, key = issue_certificate(ca, host, info.address)
    unit = (
        "[Unit]\n"
        "Description=opsrunner lab HTTPS service (the web tier's TLS endpoint)\n"
        "After=network.target\n\n"
        "[Service]\n"
        f"ExecStart=/usr/bin/python3 /usr/local/lib/opsrunner-lab/https.py {port} {WEB_ROOT} "
        f"{TLS_DIR}/server.crt {TLS_DIR}/server.key\n"
        "Restart=on-failure\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
    files = {
        f"{TLS_DIR}/server.crt": (cert.read_text(), "0644"),
        f"{TLS_DIR}/server.key": (key.read_text(), "0600"),
        f"{TLS_DIR}/ca.crt": (ca.cert.read_text(), "0644"),
        "/usr/local/lib/opsrunner-lab/https.py": (HTTPS_SERVER, "0644"),
        f"/etc/systemd/system/{TLS_UNIT}": (unit, "0644"),
    }
    for path, (content, mode) in files.items():
        lab.ssh(
            host,
            f"install -D -m {mode} /dev/stdin {shlex.quote(path)}",
            input=content,
            check=True,
        )
    lab.ssh(
        host,
        f"install -d -m 0755 {WEB_ROOT} && systemctl daemon-reload && "
        f"systemctl enable --now {TLS_UNIT} >/dev/null 2>&1 && "
        f"for i in $(seq 50); do python3 -c 'import socket; socket.create_connection"
        f'(("127.0.0.1", {port}), 1)\' 2>/dev/null && exit 0; sleep 0.2; done; '
        f"systemctl status --no-pager {TLS_UNIT}; exit 1",
        check=True,
    )
    return f"{info.address}:{port}"


def install_web_content(lab: Lab, host: str) -> str:
    """The web application on ``host``: opsdemo-web 1.0 from the lab repo and pages in /srv/www.

    Returns the installed version line of the package.
    """
    index = (
        "<!doctype html>\n<title>opsrunner lab web</title>\n"
        f"<h1>{host}</h1>\n<p>Web content of the lab's web tier (backup set web).</p>\n"
    )
    lab.ssh(
        host,
        "apt-get update -q >/dev/null && "
        f"apt-get install -y -q --allow-downgrades {WEB_PACKAGE}=1.0 >/dev/null && "
        f"install -d -m 0755 {WEB_ROOT} {WEB_ROOT}/static && "
        f"install -m 0644 /dev/stdin {WEB_ROOT}/index.html && "
        f"echo 'body {{ font-family: sans-serif }}' > {WEB_ROOT}/static/site.css",
        input=index,
        timeout=300,
        check=True,
    )
    return lab.ssh(
        host, f"dpkg-query -W -f '${{Package}} ${{Version}}' {WEB_PACKAGE}", check=True
    ).stdout.strip()


DB_SENSITIVE_PATH = "/var/lib/postgresql"
#: The lab database: an SQLite file the db backup set's pre_hook dumps (parameters/backup.yml).
DB_FILE = "/srv/db/app.sqlite"


def install_db_content(lab: Lab, host: str) -> None:
    """The database of a db host: an application SQLite file and the policy's sensitive data path.

    ``/var/lib/postgresql`` (the ``postgres`` system account's, 0700, as a PostgreSQL package
    leaves it) is the path the policy requires on encrypted storage (ENC-001) and audits
    (AUD-003) on db hosts; without it ENC-001 errs on a missing path. The lab's storage is an
    overlay with no block device, so ENC-001 then reports what a container truly cannot show.
    """
    script = (  # a fixed script run on the lab host (no outside input)
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        "c.execute('create table if not exists orders (id integer primary key, item text)')\n"
        "c.executemany('insert or ignore into orders values (?, ?)', "
        "[(1, 'lab order 1'), (2, 'lab order 2')])\n"
        "c.commit()\n"
    )
    lab.ssh(
        host,
        "id -u postgres >/dev/null 2>&1 || useradd --system --user-group --shell "
        f"/usr/sbin/nologin --home-dir {DB_SENSITIVE_PATH} postgres; "
        f"install -d -o postgres -g postgres -m 0700 {DB_SENSITIVE_PATH} && "
        f"install -d -m 0750 /srv/db && python3 - {DB_FILE}",
        input=script,
        check=True,
    )


def plant_departed_user(lab: Lab, host: str, user: str, ssh_key: str) -> None:
    """A departed person's account as it was while they worked: password, adm, key, crontab."""
    lab.ssh(
        host,
        f"id -u {user} >/dev/null 2>&1 || useradd -m -s /bin/bash -G adm {user}; "
        f"echo {user}:{secrets.token_urlsafe(18)} | chpasswd && "
        f"install -d -o {user} -m 0700 ~{user}/.ssh && "
        f"install -o {user} -m 0600 /dev/stdin ~{user}/.ssh/authorized_keys && "
        f"echo '0 * * * * true' | crontab -u {user} -",
        input=ssh_key + "\n",
        check=True,
    )


def account_state(lab: Lab, host: str, user: str) -> dict[str, str]:
    """What a host shows of an account: password lock, expiry, groups, authorized keys."""
    out = lab.ssh(
        host,
        f"getent shadow {user} | cut -d: -f2,8; id -nG {user}; "
        f"test -s ~{user}/.ssh/authorized_keys && echo keys-present || echo no-keys",
        check=True,
    ).stdout.splitlines()
    pw_field, _, expire = (out[0] if out else ":").partition(":")
    return {
        "locked": "yes" if pw_field.startswith("!") else "no",
        "expire_day": expire or "never",
        "groups": out[1] if len(out) > 1 else "",
        "keys": "removed" if len(out) > 2 and out[2] == "no-keys" else "present",
    }
