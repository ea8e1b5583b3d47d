"""The four delivery channels: signed JSON webhook, e-mail (SMTP), Telegram bot, Zalo OA.

Each makes *one* attempt with a timeout and raises `DeliveryError` saying whether trying
again may help (timeouts, connection errors, 408/429/5xx) or not (any other 4xx, a refused
recipient); retries, backoff and the delivery log belong to the dispatcher. Base URLs are
settings, so tests point them at local servers. Secrets never appear in error text.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from typing import Any, Literal, Protocol

import aiohttp

from alerts.notifier.backoff import classify_http_status
from alerts.notifier.messages import Message, truncate
from alerts.notifier.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from alerts.routing import ChannelName

__all__ = [
    "Channel",
    "DeliveryError",
    "EmailChannel",
    "Envelope",
    "SmtpConfig",
    "TelegramChannel",
    "WebhookChannel",
    "ZaloChannel",
]

TELEGRAM_TEXT_LIMIT = 4096
ZALO_TEXT_LIMIT = 2000
# Zalo answers HTTP 200 with {"error": <code>} for refusals; most codes are permanent
# (invalid token, unknown user, message refused). -32 is its request-rate limit: retried.
ZALO_TRANSIENT_ERRORS = frozenset({-32})
_USER_AGENT = "ioc-stream-notifier/1"


class DeliveryError(Exception):
    """One attempt failed; `permanent` says that retrying cannot help."""

    def __init__(self, reason: str, *, permanent: bool, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason[:500]
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message to one address; `digest_id` is stable across retries of the same rows."""

    recipient: str
    address: str
    message: Message
    digest_id: str


class Channel(Protocol):
    """Sends one message, once; raises DeliveryError on failure."""

    name: ChannelName

    async def send(self, envelope: Envelope) -> None: ...


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    what: str,
) -> tuple[int, bytes]:
    """POST and read the answer; network trouble is a transient DeliveryError."""
    try:
        async with asyncio.timeout(timeout):
            async with session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT, **headers},
            ) as response:
                return response.status, await response.read()
    except TimeoutError as exc:
        raise DeliveryError(f"{what}: timeout after {timeout:g} s", permanent=False) from exc
    except aiohttp.ClientError as exc:
        raise DeliveryError(f"{what}: {type(exc).__name__}: {exc}", permanent=False) from exc


def _check_status(status: int, answer: bytes, what: str, retry_after: float | None = None) -> None:
    outcome = classify_http_status(status)
    if outcome == "sent":
        return
    detail = answer[:200].decode("utf-8", "replace").strip()
    raise DeliveryError(
        f"{what}: HTTP {status}" + (f": {detail}" if detail else ""),
        permanent=outcome == "permanent",
        retry_after=retry_after,
    )


class WebhookChannel:
    """POSTs the notification as JSON, signed with HMAC-SHA256 (see `signing`)."""

    name: ChannelName = "webhook"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        secret: bytes,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._secret = secret
        self._timeout = timeout
        self._clock = clock

    def url(self, address: str) -> str:
        """An absolute address as is; a path joined to the base URL."""
        if address.startswith(("http://", "https://")):
            return address
        return f"{self._base_url}/{address.lstrip('/')}"

    async def send(self, envelope: Envelope) -> None:
        body = json.dumps(
            {
                "kind": "ioc.notification",
                "version": 1,
                "digest_id": envelope.digest_id,
                "recipient": envelope.recipient,
                "subject": envelope.message.subject,
                "text": envelope.message.text,
                "items": envelope.message.items,
            },
            ensure_ascii=False,
            allow_nan=False,
        ).encode()
        timestamp = str(int(self._clock()))
        headers = {
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            "Idempotency-Key": envelope.digest_id,
        }
        status, answer = await _post(
            self._session,
            self.url(envelope.address),
            body=body,
            headers=headers,
            timeout=self._timeout,
            what="webhook",
        )
        _check_status(status, answer, "webhook")


class TelegramChannel:
    """Bot API `sendMessage` to a chat id (plain text, cut to 4,096 characters)."""

    name: ChannelName = "telegram"

    def __init__(
        self, session: aiohttp.ClientSession, *, base_url: str, token: str, timeout: float
    ) -> None:
        self._session = session
        self._url = f"{base_url.rstrip('/')}/bot{token}/sendMessage"  # never logged
        self._timeout = timeout

    async def send(self, envelope: Envelope) -> None:
        body = json.dumps(
            {
                "chat_id": envelope.address,
                "text": truncate(envelope.message.text, TELEGRAM_TEXT_LIMIT),
                "disable_web_page_preview": True,
            },
            ensure_ascii=False,
        ).encode()
        status, answer = await _post(
            self._session, self._url, body=body, headers={}, timeout=self._timeout, what="telegram"
        )
        reply = _json_object(answer)
        if 200 <= status < 300 and reply.get("ok") is True:
            return
        retry_after = None
        parameters = reply.get("parameters")
        if isinstance(parameters, dict) and isinstance(parameters.get("retry_after"), int | float):
            retry_after = float(parameters["retry_after"])
        if 200 <= status < 300:  # 2xx without ok=true: not the Bot API we know
            raise DeliveryError(f"telegram: unexpected answer {answer[:200]!r}", permanent=True)
        description = str(reply.get("description") or answer[:200].decode("utf-8", "replace"))
        outcome = classify_http_status(status)
        raise DeliveryError(
            f"telegram: HTTP {status}: {description}",
            permanent=outcome == "permanent",
            retry_after=retry_after,
        )


class ZaloChannel:
    """Zalo Official Account API v3 customer-service message (`/v3.0/oa/message/cs`)."""

    name: ChannelName = "zalo"

    def __init__(
        self, session: aiohttp.ClientSession, *, base_url: str, access_token: str, timeout: float
    ) -> None:
        self._session = session
        self._url = f"{base_url.rstrip('/')}/v3.0/oa/message/cs"
        self._token = access_token
        self._timeout = timeout

    async def send(self, envelope: Envelope) -> None:
        body = json.dumps(
            {
                "recipient": {"user_id": envelope.address},
                "message": {"text": truncate(envelope.message.text, ZALO_TEXT_LIMIT)},
            },
            ensure_ascii=False,
        ).encode()
        status, answer = await _post(
            self._session,
            self._url,
            body=body,
            headers={"access_token": self._token},
            timeout=self._timeout,
            what="zalo",
        )
        _check_status(status, answer, "zalo")
        reply = _json_object(answer)
        error = reply.get("error", 0)
        if error == 0:
            return
        code = int(error) if isinstance(error, int | float) else None
        raise DeliveryError(
            f"zalo: error {error}: {reply.get('message', '')}",
            permanent=code not in ZALO_TRANSIENT_ERRORS,
        )


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to hand e-mail over."""

    host: str
    port: int
    sender: str
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password: str | None = None


class EmailChannel:
    """UTF-8 e-mail through SMTP (stdlib smtplib in a worker thread): plain text, or text and
    HTML alternatives with attachments when the message has them (the morning report)."""

    name: ChannelName = "email"

    def __init__(self, config: SmtpConfig, *, timeout: float) -> None:
        self._config = config
        self._timeout = timeout

    def build(self, envelope: Envelope) -> MIMEBase:
        # The legacy (compat32) API on purpose: the modern one drops the space between two
        # RFC 2047 encoded words when it folds a long Vietnamese subject (CPython's folder).
        message = envelope.message
        mail: MIMEBase
        if message.html is None and not message.attachments:
            mail = MIMEText(message.text, "plain", "utf-8")
        else:
            body = MIMEMultipart("alternative")
            body.attach(MIMEText(message.text, "plain", "utf-8"))
            if message.html is not None:
                body.attach(MIMEText(message.html, "html", "utf-8"))
            if message.attachments:
                mail = MIMEMultipart("mixed")
                mail.attach(body)
                for attachment in message.attachments:
                    part = MIMEApplication(
                        attachment.content, attachment.mime_type.split("/", 1)[1]
                    )
                    part.add_header(
                        "Content-Disposition", "attachment", filename=attachment.filename
                    )
                    mail.attach(part)
            else:
                mail = body
        mail["Subject"] = Header(envelope.message.subject, "utf-8")  # type: ignore[assignment]
        name, address = parseaddr(self._config.sender)
        mail["From"] = formataddr((name, address), charset="utf-8")
        mail["To"] = envelope.address
        mail["Date"] = formatdate(localtime=False)
        # Stable across retries: a receiving system can drop a duplicate by Message-ID.
        mail["Message-ID"] = make_msgid(idstring=envelope.digest_id, domain="ioc-stream")
        mail["X-IOC-Digest-Id"] = envelope.digest_id
        return mail

    async def send(self, envelope: Envelope) -> None:
        mail = self.build(envelope)
        try:
            # smtplib's own timeout bounds each socket operation; the outer one the whole call
            # (the thread is left to finish on its own when it fires).
            async with asyncio.timeout(self._timeout * 3):
                await asyncio.to_thread(self._send_blocking, mail)
        except TimeoutError as exc:
            raise DeliveryError(
                f"email: timeout after {self._timeout:g} s", permanent=False
            ) from exc

    def _send_blocking(self, mail: MIMEBase) -> None:
        cfg = self._config
        try:
            client: smtplib.SMTP
            if cfg.security == "ssl":
                client = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, timeout=self._timeout, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(cfg.host, cfg.port, timeout=self._timeout)
            with client:
                if cfg.security == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if cfg.username:
                    client.login(cfg.username, cfg.password or "")
                refused = client.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                f"email: recipient refused {codes}", permanent=all(c >= 500 for c in codes)
            ) from exc
        except smtplib.SMTPResponseException as exc:
            error = exc.smtp_error
            text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
            raise DeliveryError(
                f"email: SMTP {exc.smtp_code}: {text}", permanent=exc.smtp_code >= 500
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"email: {type(exc).__name__}: {exc}", permanent=False) from exc
        if refused:
            raise DeliveryError(f"email: refused {sorted(refused)}", permanent=True)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
