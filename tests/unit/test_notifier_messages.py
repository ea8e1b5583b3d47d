"""Message rendering: Vietnamese first, then English; one alert or a digest of several."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from alerts.notifier.messages import MessageContext, format_elapsed, render, truncate
from foundation.contract.alerts import AlertTransition, Fingerprint
from foundation.contract.catalog import load_catalog

CONTEXT = MessageContext.from_catalog(load_catalog())
# 20:15 in Bình Phước (UTC+7) on 26/11/2026.
STARTED = datetime(2026, 11, 26, 13, 15, tzinfo=UTC).timestamp()


def alert(
    kind: str = "fire", *, fp: str = "health.bed_occupancy_high|dong-xoai", **extra
) -> AlertTransition:
    values = {
        "fingerprint": Fingerprint(fp),
        "seq": 3,
        "transition": kind,
        "state": "firing",
        "previous_state": "pending",
        "rule": "bed_occupancy_high",
        "severity": "critical",
        "labels": {"sector": "health", "district": "dong-xoai"},
        "at": STARTED + 12 * 60,
        "started_at": STARTED,
        "value": 97.0,
        "message_vi": "Công suất giường bệnh 97% vượt ngưỡng 95%",
        "message_en": "Bed occupancy 97% above 95%",
    }
    values.update(extra)
    return AlertTransition(**values)  # type: ignore[arg-type]


def test_one_alert_vietnamese_first_with_everything_an_officer_needs() -> None:
    """Severity label, message, sector, start time, elapsed time, fingerprint, ack command."""
    message = render([alert()], CONTEXT)
    vi, en = message.text.split("— English —")
    assert vi.splitlines()[:3] == [
        "[IOC Bình Phước]",
        "CẢNH BÁO · NGHIÊM TRỌNG · Y tế",
        "Công suất giường bệnh 97% vượt ngưỡng 95%",
    ]
    assert "Bắt đầu lúc 20:15 26/11/2026, đã 12 phút" in vi
    assert "Mã cảnh báo: health.bed_occupancy_high|dong-xoai" in vi
    assert "Tiếp nhận: ioc alerts ack health.bed_occupancy_high|dong-xoai" in vi
    assert "ALERT · CRITICAL · Health" in en
    assert "Bed occupancy 97% above 95%" in en
    assert "Started 20:15 26/11/2026, 12 min ago" in en
    assert "Acknowledge: ioc alerts ack health.bed_occupancy_high|dong-xoai" in en
    assert message.subject == (
        "[IOC Bình Phước] CẢNH BÁO · NGHIÊM TRỌNG · Y tế: Công suất giường bệnh 97% vượt ngưỡng 95%"
    )
    assert message.items[0]["idempotency_key"] == "health.bed_occupancy_high|dong-xoai#3"


def test_escalation_names_the_level_from_the_catalog() -> None:
    """Level 1 is the catalog's Vice-Chairman in charge of the sector."""
    text = render([alert("escalate", escalation_level=1)], CONTEXT).text
    assert "CHUYỂN CẤP 1 (Phó Chủ tịch UBND tỉnh phụ trách lĩnh vực)" in text
    assert "ESCALATED to level 1 (Vice-Chairman in charge of the sector)" in text


def test_ack_and_resolve_say_who_and_offer_no_ack_command() -> None:
    """An acknowledgement names the officer; a resolution is not to be acknowledged again."""
    ack = render([alert("ack", acknowledged_by="Nguyễn Văn An", state="acknowledged")], CONTEXT)
    assert "ĐÃ TIẾP NHẬN" in ack.text and "Người tiếp nhận: Nguyễn Văn An" in ack.text
    assert "ioc alerts ack" not in ack.text
    resolved = render([alert("resolve", state="resolved", at=STARTED + 3 * 3600 + 300)], CONTEXT)
    assert "ĐÃ XỬ LÝ" in resolved.text and "đã 3 giờ 5 phút" in resolved.text
    assert "RESOLVED" in resolved.text and "3 h 5 min ago" in resolved.text


def test_stale_data_is_said() -> None:
    """An alert computed from stale data says so (it will not escalate)."""
    assert "dữ liệu đã cũ" in render([alert(stale=True)], CONTEXT).text


def test_a_digest_lists_each_alert_with_its_fingerprint_vietnamese_first() -> None:
    """Two alerts for one recipient: one message, numbered, the worst severity in the subject."""
    second = alert(
        fp="traffic.jam|dong-xoai",
        severity="warning",
        labels={"sector": "traffic"},
        message_vi="Ùn tắc tại Đồng Xoài",
        message_en="Congestion in Dong Xoai",
    )
    message = render([alert(), second], CONTEXT)
    vi, en = message.text.split("— English —")
    assert vi.startswith("[IOC Bình Phước] 2 thông báo cảnh báo")
    assert "1. CẢNH BÁO · NGHIÊM TRỌNG · Y tế — Công suất giường bệnh 97%" in vi
    assert "2. CẢNH BÁO · CẢNH BÁO · Giao thông — Ùn tắc tại Đồng Xoài (đã 12 phút)" in vi
    assert "→ ioc alerts ack traffic.jam|dong-xoai" in vi
    assert "2 alert notifications" in en and "Congestion in Dong Xoai (12 min ago)" in en
    assert message.subject == "[IOC Bình Phước] 2 thông báo cảnh báo (cao nhất: nghiêm trọng)"
    assert [i["fingerprint"] for i in message.items] == [
        "health.bed_occupancy_high|dong-xoai",
        "traffic.jam|dong-xoai",
    ]


def test_unknown_sector_falls_back_to_its_id() -> None:
    """A sector the catalog lacks still renders (by id)."""
    text = render([alert(labels={"sector": "t1234"})], MessageContext()).text
    assert "· t1234" in text


@pytest.mark.parametrize(
    ("seconds", "vi", "en"),
    [
        (0, "0 giây", "0 s"),
        (45, "45 giây", "45 s"),
        (720, "12 phút", "12 min"),
        (3600, "1 giờ", "1 h"),
        (3 * 3600 + 300, "3 giờ 5 phút", "3 h 5 min"),
        (2 * 86400 + 4 * 3600 + 59, "2 ngày 4 giờ", "2 d 4 h"),
        (-5, "0 giây", "0 s"),
    ],
)
def test_elapsed_time_in_both_languages(seconds: float, vi: str, en: str) -> None:
    """Durations read naturally, to the two largest units."""
    assert format_elapsed(seconds) == (vi, en)


def test_truncation_keeps_the_limit_and_says_so() -> None:
    """Telegram/Zalo limits: the cut text fits and ends with a marker."""
    cut = truncate("Đồng Xoài " * 500, 2000)
    assert len(cut) == 2000 and cut.endswith("(đã cắt bớt / truncated)")
    assert truncate("ngắn", 2000) == "ngắn"


def test_times_are_shown_in_the_provinces_zone() -> None:
    """The catalog's zone (Asia/Ho_Chi_Minh), not the server's."""
    assert CONTEXT.zone == ZoneInfo("Asia/Ho_Chi_Minh")
