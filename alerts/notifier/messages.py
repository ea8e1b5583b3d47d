"""What a notification says: Vietnamese first, then English (pure).

One transition gives a message with its details; several for one recipient (grouped within
`group_wait`) give one digest listing each. Every alert line carries its fingerprint and the
command to acknowledge it (`ioc alerts ack FINGERPRINT`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from foundation.contract.alerts import SEVERITY_LABELS, SEVERITY_RANK, AlertTransition
from foundation.contract.catalog import Catalog

__all__ = [
    "Attachment",
    "LinkMaker",
    "Message",
    "MessageContext",
    "format_elapsed",
    "render",
    "truncate",
]

# (recipient id, transition) -> the URL of the alert's phone page signed for that recipient,
# or None (no page for this recipient).
LinkMaker = Callable[[str, AlertTransition], str | None]

# (Vietnamese, English) headline of a transition kind; {level} is the escalation level's name.
_HEADLINES: dict[str, tuple[str, str]] = {
    "fire": ("CẢNH BÁO", "ALERT"),
    "refire": ("CẢNH BÁO LẶP LẠI", "ALERT AGAIN"),
    "escalate": ("CHUYỂN CẤP", "ESCALATED"),
    "resolve": ("ĐÃ XỬ LÝ", "RESOLVED"),
    "ack": ("ĐÃ TIẾP NHẬN", "ACKNOWLEDGED"),
}
_SEPARATOR = "— English —"


@dataclass(frozen=True, slots=True)
class MessageContext:
    """Display names a message needs: province, sectors, escalation levels, time zone."""

    province: tuple[str, str] = ("IOC", "IOC")
    sectors: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    levels: Mapping[int, tuple[str, str]] = field(default_factory=dict)
    zone: tzinfo = field(default_factory=lambda: ZoneInfo("Asia/Ho_Chi_Minh"))
    link: LinkMaker | None = None

    @classmethod
    def from_catalog(cls, catalog: Catalog, link: LinkMaker | None = None) -> MessageContext:
        return cls(
            link=link,
            province=(catalog.province.name_vi, catalog.province.name_en),
            sectors={s.id: (s.name_vi, s.name_en) for s in catalog.sectors},
            levels={
                lvl.level: (lvl.name_vi or lvl.role, lvl.name_en or lvl.role)
                for lvl in catalog.escalation.levels
            },
            zone=ZoneInfo(catalog.province.timezone),
        )

    def sector(self, sector_id: str) -> tuple[str, str]:
        return self.sectors.get(sector_id, (sector_id, sector_id))

    def level(self, level: int) -> tuple[str, str]:
        return self.levels.get(level, (f"cấp {level}", f"level {level}"))


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with an e-mail (the report's PDF)."""

    filename: str
    content: bytes
    mime_type: str = "application/pdf"


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered notification: e-mail subject, plain text (vi then en), and its items.

    `html` and `attachments` are used by the e-mail channel only (the morning report);
    the other channels send the text.
    """

    subject: str
    text: str
    items: list[dict[str, Any]]  # the transition records, for the webhook's JSON
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()


def format_elapsed(seconds: float) -> tuple[str, str]:
    """A duration as (Vietnamese, English): '12 phút' / '12 min', '2 giờ 5 phút' / '2 h 5 min'."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        parts = [(days, "ngày", "d"), (hours, "giờ", "h")]
    elif hours:
        parts = [(hours, "giờ", "h"), (minutes, "phút", "min")]
    elif minutes:
        parts = [(minutes, "phút", "min")]
    else:
        parts = [(secs, "giây", "s")]
    shown = [p for p in parts if p[0]] or parts[:1]
    return (
        " ".join(f"{n} {vi}" for n, vi, _ in shown),
        " ".join(f"{n} {en}" for n, _, en in shown),
    )


def render(
    transitions: Sequence[AlertTransition],
    context: MessageContext,
    *,
    recipient: str | None = None,
) -> Message:
    """One message for one transition, a digest for several (in the order given).

    With a recipient and a link maker in the context, every alert carries the link to its
    phone page, signed for that recipient.
    """
    if not transitions:
        raise ValueError("nothing to render")
    links = {
        t.fingerprint: link
        for t in transitions
        if recipient is not None
        and context.link is not None
        and (link := context.link(recipient, t)) is not None
    }
    items = [
        t.to_json()
        | {"idempotency_key": t.idempotency_key}
        | ({"link": links[t.fingerprint]} if t.fingerprint in links else {})
        for t in transitions
    ]
    prov_vi, prov_en = context.province
    if len(transitions) == 1:
        t = transitions[0]
        vi_lines, en_lines = _detail(t, context, links.get(t.fingerprint))
        sev_vi = SEVERITY_LABELS[t.severity][0]
        head_vi = _headline(t, context)[0]
        subject = f"[IOC {prov_vi}] {head_vi} · {sev_vi.upper()} · {context.sector(t.sector)[0]}"
        subject += f": {t.message_vi}"
        vi = [f"[IOC {prov_vi}]", *vi_lines]
        en = [f"[IOC {prov_en}]", *en_lines]
    else:
        worst = max(transitions, key=lambda t: SEVERITY_RANK[t.severity]).severity
        n = len(transitions)
        subject = f"[IOC {prov_vi}] {n} thông báo cảnh báo (cao nhất: {SEVERITY_LABELS[worst][0]})"
        vi = [f"[IOC {prov_vi}] {n} thông báo cảnh báo"]
        en = [f"[IOC {prov_en}] {n} alert notifications"]
        for index, t in enumerate(transitions, 1):
            vi_line, en_line = _summary(t, context, links.get(t.fingerprint))
            vi.append(f"{index}. {vi_line}")
            en.append(f"{index}. {en_line}")
    return Message(subject, "\n".join([*vi, "", _SEPARATOR, *en]), items)


def truncate(text: str, limit: int) -> str:
    """Cut text to at most `limit` characters, saying so (Telegram 4096, Zalo 2000)."""
    if len(text) <= limit:
        return text
    marker = "\n… (đã cắt bớt / truncated)"
    return text[: max(0, limit - len(marker))] + marker


def _headline(t: AlertTransition, context: MessageContext) -> tuple[str, str]:
    vi, en = _HEADLINES.get(t.transition, (t.transition.upper(), t.transition.upper()))
    if t.transition == "escalate":
        lvl_vi, lvl_en = context.level(t.escalation_level)
        return (
            f"{vi} {t.escalation_level} ({lvl_vi})",
            f"{en} to level {t.escalation_level} ({lvl_en})",
        )
    return vi, en


def _clock(at: float, context: MessageContext) -> str:
    return datetime.fromtimestamp(at, context.zone).strftime("%H:%M %d/%m/%Y")


def _detail(
    t: AlertTransition, context: MessageContext, link: str | None
) -> tuple[list[str], list[str]]:
    head_vi, head_en = _headline(t, context)
    sev_vi, sev_en = SEVERITY_LABELS[t.severity]
    sector_vi, sector_en = context.sector(t.sector)
    ago_vi, ago_en = format_elapsed(t.at - t.started_at)
    vi = [
        f"{head_vi} · {sev_vi.upper()} · {sector_vi}",
        t.message_vi,
        f"Lĩnh vực: {sector_vi}",
        f"Bắt đầu lúc {_clock(t.started_at, context)}, đã {ago_vi}",
    ]
    en = [
        f"{head_en} · {sev_en.upper()} · {sector_en}",
        t.message_en,
        f"Sector: {sector_en}",
        f"Started {_clock(t.started_at, context)}, {ago_en} ago",
    ]
    if t.escalation_level > 0:
        lvl_vi, lvl_en = context.level(t.escalation_level)
        vi.append(f"Cấp xử lý: {t.escalation_level} – {lvl_vi}")
        en.append(f"Escalation level: {t.escalation_level} – {lvl_en}")
    if t.transition == "ack" and t.acknowledged_by:
        vi.append(f"Người tiếp nhận: {t.acknowledged_by}")
        en.append(f"Acknowledged by: {t.acknowledged_by}")
    if t.transition == "resolve" and t.actor:
        vi.append(f"Người xử lý: {t.actor}")
        en.append(f"Resolved by: {t.actor}")
    if t.transition == "escalate" and t.actor:
        vi.append(f"Người chuyển cấp: {t.actor}")
        en.append(f"Escalated by: {t.actor}")
    if t.stale:
        vi.append("Lưu ý: tính từ dữ liệu đã cũ (nguồn mất tín hiệu)")
        en.append("Note: computed from stale data (a source went silent)")
    vi.append(f"Mã cảnh báo: {t.fingerprint}")
    en.append(f"Fingerprint: {t.fingerprint}")
    if link is not None:
        vi.append(f"Xem và xử lý trên điện thoại: {link}")
        en.append(f"View and act on your phone: {link}")
    if t.transition in ("fire", "refire", "escalate"):
        vi.append(f"Tiếp nhận: ioc alerts ack {t.fingerprint}")
        en.append(f"Acknowledge: ioc alerts ack {t.fingerprint}")
    return vi, en


def _summary(t: AlertTransition, context: MessageContext, link: str | None) -> tuple[str, str]:
    head_vi, head_en = _headline(t, context)
    sev_vi, sev_en = SEVERITY_LABELS[t.severity]
    sector_vi, sector_en = context.sector(t.sector)
    ago_vi, ago_en = format_elapsed(t.at - t.started_at)
    ack = t.transition in ("fire", "refire", "escalate")
    vi = (
        f"{head_vi} · {sev_vi.upper()} · {sector_vi} — {t.message_vi} (đã {ago_vi})"
        f"\n   Mã: {t.fingerprint}" + (f" → ioc alerts ack {t.fingerprint}" if ack else "")
    )
    en = (
        f"{head_en} · {sev_en.upper()} · {sector_en} — {t.message_en} ({ago_en} ago)"
        f"\n   Fingerprint: {t.fingerprint}" + (f" → ioc alerts ack {t.fingerprint}" if ack else "")
    )
    if link is not None:
        vi += f"\n   Xem và xử lý: {link}"
        en += f"\n   View and act: {link}"
    return vi, en
