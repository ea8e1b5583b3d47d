"""When the reports are due (pure): each day at the reporter's hour (07:00 in the province)
the daily edition of the day before, and on Mondays the weekly edition of the week before.

A report whose time has come stays due for `catch_up` seconds, so a reporter that was down
at 07:00 sends it when it comes back (the database says whether it was sent already).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from consumers.reports.model import Edition

__all__ = ["Due", "due_editions"]


@dataclass(frozen=True, slots=True, order=True)
class Due:
    """An edition whose time has come: the day (daily) or the Monday (weekly) it covers."""

    edition: Edition
    first_day: date
    send_at: float


def due_editions(now: float, *, zone: ZoneInfo, hour: int, catch_up: float) -> list[Due]:
    """Editions due at `now`: their send time has passed by less than `catch_up` seconds."""
    today = datetime.fromtimestamp(now, zone).date()
    days_back = int(catch_up // 86400) + 1
    found: list[Due] = []
    for back in range(days_back + 1):
        day = today - timedelta(days=back)
        send_at = datetime(day.year, day.month, day.day, hour, tzinfo=zone).timestamp()
        if not send_at <= now < send_at + max(catch_up, 1.0):
            continue
        found.append(Due("daily", day - timedelta(days=1), send_at))
        if day.weekday() == 0:  # Monday: the week before, Monday to Sunday
            found.append(Due("weekly", day - timedelta(days=7), send_at))
    return sorted(found)
