"""Delivery over e-mail (SMTP + STARTTLS + auth), signed webhooks and DingTalk/WeCom/Feishu robots.

Hand-written on the standard library rather than on apprise: the signed Alertmanager-like
webhook is not an apprise service, apprise reports one bool per send where the outbox records
each recipient's error, and its chat plugins hard-code the vendors' URLs (the tests point a
channel's base URL at a loopback receiver; nothing here may reach a real server in a test).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Protocol

from opsrunner.policy.models import ChatChannel, EmailChannel, WebhookChannel

SIGNATURE_HEADER = "X-Opsrunner-Signature"
TIMESTAMP_HEADER = "X-Opsrunner-Timestamp"
UNSET_END = "0001-01-01T00:00:00Z"  # Alertmanager's "no end yet"
CHAT_URLS = {
    "dingtalk": "https://oapi.dingtalk.com/robot/send",
    "wecom": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send",
    "feishu": "https://open.feishu.cn/open-apis/bot/v2/hook",
}
Channel = EmailChannel | WebhookChannel | ChatChannel


class DeliveryError(RuntimeError):
    """One delivery failed; the outbox records the message and retries later."""


class SecretSource(Protocol):
    """Where channels read their secrets by name (opsrunner.notify.secrets.Secrets)."""

    def get(self, name: str) -> str: ...


@dataclasses.dataclass(frozen=True)
class Message:
    """What is sent: the same content over every channel, shaped per channel."""

    kind: str  # notice | alert | resolved | change
    subject: str
    text: str
    ref: str  # notice ident, alert fingerprint or change ident
    status: str = "firing"  # firing | resolved (webhooks)
    severity: str = "info"
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    starts_at: str = ""
    ends_at: str = ""

    def as_json(self) -> dict[str, Any]:
        """A plain dict for the outbox."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        """Back from the outbox."""
        return cls(**data)


def utc_iso(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a Z."""
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def send(
    channel_name: str, channel: Channel, recipient: str, message: Message, secrets: SecretSource
) -> str:
    """Deliver one message to one recipient; returns a short receipt, raises DeliveryError."""
    try:
        if isinstance(channel, EmailChannel):
            return _send_email(channel, recipient, message, secrets)
        if isinstance(channel, WebhookChannel):
            return _send_webhook(channel_name, channel, message, secrets)
        return _send_chat(channel, message, secrets)
    except DeliveryError:
        raise
    except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        raise DeliveryError(f"{channel_name}: {type(exc).__name__}: {exc}") from exc
    except RuntimeError as exc:  # SecretsError and friends: no secret value is ever in the text
        raise DeliveryError(f"{channel_name}: {exc}") from exc


# -- e-mail --------------------------------------------------------------------------------------
def email_message(channel: EmailChannel, recipient: str, message: Message) -> EmailMessage:
    """The e-mail as sent (tests read the same headers back)."""
    mail = EmailMessage()
    mail["From"] = channel.sender
    mail["To"] = recipient
    mail["Subject"] = message.subject
    mail["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    mail["Message-ID"] = make_msgid(domain=channel.sender.rsplit("@", 1)[1])
    mail["X-Opsrunner-Kind"] = message.kind
    mail["X-Opsrunner-Ref"] = message.ref
    mail.set_content(message.text)
    return mail


def _send_email(
    channel: EmailChannel, recipient: str, message: Message, secrets: SecretSource
) -> str:
    mail = email_message(channel, recipient, message)
    with smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_seconds) as smtp:
        smtp.ehlo()
        if channel.starttls:
            if not smtp.has_extn("starttls"):
                # Never fall back to plain text: the password and the content stay encrypted.
                raise DeliveryError(f"{channel.host}:{channel.port} does not offer STARTTLS")
            smtp.starttls(context=ssl.create_default_context(cafile=channel.ca_file))
            smtp.ehlo()
        if channel.username and channel.password_secret:
            smtp.login(channel.username, secrets.get(channel.password_secret))
        refused = smtp.send_message(mail, from_addr=channel.sender, to_addrs=[recipient])
    if refused:
        raise DeliveryError(f"{recipient}: refused {refused[recipient]!r}")
    return f"smtp {channel.host}:{channel.port} accepted {mail['Message-ID']}"


# -- HTTP ----------------------------------------------------------------------------------------
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is a failed delivery, never a second destination


# No proxy from the environment: a channel's URL is the only place a message goes.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DeliveryError(f"{_safe(url)}: only http and https URLs are delivered to")
    # S310: the scheme is checked just above.
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310
    for key, value in {"Content-Type": "application/json; charset=utf-8", **headers}.items():
        request.add_header(key, value)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read(65536))
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"{_safe(url)}: HTTP {exc.code}") from exc
    except urllib.error.URLError as exc:
        raise DeliveryError(f"{_safe(url)}: {exc.reason}") from exc


def _safe(url: str) -> str:
    """The URL without its query (tokens ride there) for error messages."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def sign_webhook(key: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: sha256=<hex HMAC-SHA256 of "<timestamp>." + body>."""
    digest = hmac.new(key.encode("utf-8"), timestamp.encode("ascii") + b"." + body, "sha256")
    return "sha256=" + digest.hexdigest()


def webhook_payload(receiver: str, message: Message) -> dict[str, Any]:
    """Alertmanager-like (webhook version 4): one alert, labels, annotations, fingerprint."""
    alert: dict[str, Any] = {
        "status": message.status,
        "labels": {"alertname": message.labels.get("alertname", message.kind), **message.labels},
        "annotations": {
            "summary": message.subject,
            "description": message.text,
            **message.annotations,
        },
        "startsAt": message.starts_at or UNSET_END,
        "endsAt": message.ends_at or UNSET_END,
        "fingerprint": message.ref,
        "generatorURL": "",
    }
    return {
        "version": "4",
        "receiver": receiver,
        "status": message.status,
        "groupKey": message.ref,
        "groupLabels": {"alertname": alert["labels"]["alertname"]},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "",
        "alerts": [alert],
    }


def _send_webhook(
    name: str, channel: WebhookChannel, message: Message, secrets: SecretSource
) -> str:
    body = json.dumps(webhook_payload(name, message), ensure_ascii=False, sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign_webhook(secrets.get(channel.hmac_secret), timestamp, body),
    }
    status, _ = _post(channel.url, body, headers, channel.timeout_seconds)
    if not 200 <= status < 300:
        raise DeliveryError(f"{_safe(channel.url)}: HTTP {status}")
    return f"{_safe(channel.url)}: HTTP {status}"


# -- chat robots ---------------------------------------------------------------------------------
def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk: base64(HMAC-SHA256(key=secret, "<ms>\\n<secret>"))."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def feishu_sign(secret: str, timestamp_s: str) -> str:
    """Feishu/Lark: base64(HMAC-SHA256(key="<s>\\n<secret>", empty message))."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def chat_request(
    channel: ChatChannel, message: Message, secrets: SecretSource, now: float | None = None
) -> tuple[str, dict[str, Any]]:
    """The URL and JSON body a robot gets (signed where the vendor signs)."""
    base = (channel.base_url or CHAT_URLS[channel.type]).rstrip("/")
    token = secrets.get(channel.token_secret)
    text = f"{message.subject}\n\n{message.text}"
    clock = time.time() if now is None else now
    if channel.type == "dingtalk":
        query = {"access_token": token}
        if channel.sign_secret:
            stamp = str(int(clock * 1000))
            query |= {
                "timestamp": stamp,
                "sign": dingtalk_sign(secrets.get(channel.sign_secret), stamp),
            }
        body: dict[str, Any] = {
            "msgtype": "markdown",
            "markdown": {"title": message.subject, "text": text},
        }
        return f"{base}?{urllib.parse.urlencode(query)}", body
    if channel.type == "wecom":
        body = {"msgtype": "markdown", "markdown": {"content": text}}
        return f"{base}?{urllib.parse.urlencode({'key': token})}", body
    body = {"msg_type": "text", "content": {"text": text}}
    if channel.sign_secret:
        stamp = str(int(clock))
        body |= {"timestamp": stamp, "sign": feishu_sign(secrets.get(channel.sign_secret), stamp)}
    return f"{base}/{urllib.parse.quote(token, safe='')}", body


def _send_chat(channel: ChatChannel, message: Message, secrets: SecretSource) -> str:
    url, body = chat_request(channel, message, secrets)
    status, raw = _post(
        url, json.dumps(body, ensure_ascii=False).encode(), {}, channel.timeout_seconds
    )
    try:
        answer = json.loads(raw or b"{}")
    except ValueError as exc:
        raise DeliveryError(f"{_safe(url)}: HTTP {status}, not a JSON answer") from exc
    # The robots answer 200 with an error code inside: 0 is the only success.
    code = answer.get("errcode", answer.get("code", answer.get("StatusCode", 0)))
    if code != 0:
        detail = answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage") or ""
        raise DeliveryError(f"{channel.type} {_safe(url)}: error {code} {detail}".rstrip())
    return f"{channel.type} {_safe(url)}: ok"
