"""Each channel delivers to a real loopback receiver: e-mail over STARTTLS with AUTH, the signed
webhook, and the DingTalk, WeCom and Feishu robots with their vendors' signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from pathlib import Path

import pytest

from opsrunner.notify.channels import DeliveryError, Message, send
from opsrunner.notify.routing import secrets_for
from opsrunner.notify.secrets import SecretsError, read_secrets
from opsrunner.policy.loader import Policy
from tests.unit.notify.conftest import (
    DING_SECRET,
    DING_TOKEN,
    FEISHU_SECRET,
    FEISHU_TOKEN,
    HMAC_KEY,
    SMTP_USER,
    WECOM_KEY,
    HttpReceiver,
    SmtpSink,
)

MESSAGE = Message(
    kind="alert",
    subject="[opsrunner] FIRING high: PAT-001 fail on host1",
    text="PAT-001 fail on host1: 2 security updates overdue\n",
    ref="0123456789abcdef",
    severity="high",
    labels={"alertname": "ControlFailing", "control": "PAT-001", "host": "host1"},
    starts_at="2026-12-03T07:00:00Z",
)


def _send(policy: Policy, tmp_path: Path, channel: str, recipient: str = "") -> str:
    secrets = secrets_for(policy, tmp_path)
    conf = policy.notifications.channels[channel]
    return send(channel, conf, recipient or channel, MESSAGE, secrets)


def test_email_goes_over_starttls_with_auth(
    policy: Policy, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    receipt = _send(policy, tmp_path, "mail", "finance@biz.example.com")
    assert "accepted" in receipt
    (mail,) = smtp_sink.received
    assert mail.tls, "the message travelled after STARTTLS"
    assert mail.login == SMTP_USER
    assert mail.rcpt_tos == ["finance@biz.example.com"]
    assert mail.mail_from == "opsrunner@ops.example.com"
    assert mail.message["Subject"] == MESSAGE.subject
    assert mail.message["X-Opsrunner-Ref"] == MESSAGE.ref
    assert "2 security updates overdue" in mail.message.get_payload(decode=True).decode()


def test_email_refuses_a_server_without_starttls(policy: Policy, tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    from tests.unit.notify.conftest import free_port

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            raise AssertionError("nothing may be sent in plain text")

    port = free_port()
    plain = Controller(Sink(), hostname="127.0.0.1", port=port)
    plain.start()
    try:
        conf = policy.notifications.channels["mail"].model_copy(update={"port": port})
        with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
            send("mail", conf, "x@biz.example.com", MESSAGE, secrets_for(policy, tmp_path))
    finally:
        plain.stop()


def test_webhook_is_alertmanager_like_and_signed(
    policy: Policy, tmp_path: Path, http_receiver: HttpReceiver
) -> None:
    _send(policy, tmp_path, "hook")
    (request,) = http_receiver.requests
    assert request.path == "/hook"
    stamp = request.headers["X-Opsrunner-Timestamp"]
    expected = hmac.new(HMAC_KEY.encode(), stamp.encode() + b"." + request.body, "sha256")
    assert request.headers["X-Opsrunner-Signature"] == "sha256=" + expected.hexdigest()
    body = request.json()
    assert body["status"] == "firing" and body["version"] == "4"
    (alert,) = body["alerts"]
    assert alert["fingerprint"] == MESSAGE.ref
    assert alert["labels"]["control"] == "PAT-001"
    assert alert["annotations"]["summary"] == MESSAGE.subject
    assert alert["startsAt"] == "2026-12-03T07:00:00Z"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"


def test_webhook_error_status_is_a_failed_delivery(
    policy: Policy, tmp_path: Path, http_receiver: HttpReceiver
) -> None:
    http_receiver.status = 503
    with pytest.raises(DeliveryError, match="HTTP 503"):
        _send(policy, tmp_path, "hook")


def test_dingtalk_payload_and_signature(
    policy: Policy, tmp_path: Path, http_receiver: HttpReceiver
) -> None:
    http_receiver.answer = {"errcode": 0, "errmsg": "ok"}
    _send(policy, tmp_path, "ding")
    (request,) = http_receiver.requests
    path, _, query = request.path.partition("?")
    params = dict(urllib.parse.parse_qsl(query))
    assert path == "/robot/send" and params["access_token"] == DING_TOKEN
    string = f"{params['timestamp']}\n{DING_SECRET}".encode()
    digest = hmac.new(DING_SECRET.encode(), string, hashlib.sha256).digest()
    assert params["sign"] == base64.b64encode(digest).decode()
    body = request.json()
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == MESSAGE.subject
    assert "2 security updates overdue" in body["markdown"]["text"]


def test_dingtalk_error_code_is_a_failed_delivery(
    policy: Policy, tmp_path: Path, http_receiver: HttpReceiver
) -> None:
    http_receiver.answer = {"errcode": 310000, "errmsg": "sign not match"}
    with pytest.raises(DeliveryError, match="310000 sign not match"):
        _send(policy, tmp_path, "ding")


def test_wecom_payload(policy: Policy, tmp_path: Path, http_receiver: HttpReceiver) -> None:
    http_receiver.answer = {"errcode": 0, "errmsg": "ok"}
    _send(policy, tmp_path, "wecom")
    (request,) = http_receiver.requests
    assert request.path == f"/cgi-bin/webhook/send?key={WECOM_KEY}"
    body = request.json()
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["content"].startswith(MESSAGE.subject)


def test_feishu_payload_and_signature(
    policy: Policy, tmp_path: Path, http_receiver: HttpReceiver
) -> None:
    http_receiver.answer = {"code": 0, "msg": "success"}
    _send(policy, tmp_path, "feishu")
    (request,) = http_receiver.requests
    assert request.path == f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}"
    body = request.json()
    key = f"{body['timestamp']}\n{FEISHU_SECRET}".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert body["msg_type"] == "text" and MESSAGE.subject in body["content"]["text"]


def test_secrets_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "open.yml"
    path.write_text("smtp: x\n")
    path.chmod(0o644)
    with pytest.raises(SecretsError, match="readable by others"):
        read_secrets(path)


def test_vault_encrypted_secrets_are_decrypted(tmp_path: Path) -> None:
    from ansible.parsing.vault import VaultLib, VaultSecret

    password = tmp_path / "vault-pass"
    password.write_text("correct horse\n")
    password.chmod(0o600)
    vault = VaultLib([("default", VaultSecret(b"correct horse"))])
    path = tmp_path / "secrets.yml"
    path.write_bytes(vault.encrypt(b"smtp: from-the-vault\n"))
    path.chmod(0o600)
    assert read_secrets(path, password) == {"smtp": "from-the-vault"}
    with pytest.raises(SecretsError, match="vault_password_file"):
        read_secrets(path)
