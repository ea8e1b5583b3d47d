"""Query parameters of the history API: times, ranges, buckets, page sizes, cursors (pure).

Every check raises `HistoryQueryError` with the code and HTTP status the API answers with;
nothing here touches the network or the database.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from foundation.errors import HistoryQueryError

__all__ = [
    "BUCKETS",
    "DEFAULT_LOG_RANGE",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_SERIES_RANGE",
    "MAX_BUCKETS",
    "MAX_LOG_RANGE",
    "MAX_PAGE_SIZE",
    "PROVINCE_ORIGIN",
    "SUPPORTED_TIMES",
    "TimeRange",
    "check_text",
    "decode_cursor",
    "encode_cursor",
    "format_time",
    "page_size",
    "parse_time",
    "time_range",
    "to_datetime",
]

# Buckets a series can be asked in (seconds); "raw" is the KPI points themselves.
BUCKETS: Final[dict[str, float | None]] = {
    "raw": None,
    "1m": 60.0,
    "5m": 300.0,
    "15m": 900.0,
    "1h": 3600.0,
    "1d": 86400.0,
}
MAX_BUCKETS: Final = 2000  # buckets (or raw points) per series in one answer
DEFAULT_SERIES_RANGE: Final = 86400.0  # a series without `from`: the last 24 h
MAX_PAGE_SIZE: Final = 1000
DEFAULT_PAGE_SIZE: Final = 100
DEFAULT_LOG_RANGE: Final = 7 * 86400.0  # alert history, dead letters: the last 7 days
MAX_LOG_RANGE: Final = 93 * 86400.0  # … and at most about a quarter per request

# Buckets are aligned on the province's midnight (UTC+7, no daylight saving): a 1d bucket
# is a day of Bình Phước, like the daily rollup; hours and minutes align as in UTC.
PROVINCE_ORIGIN: Final = -7 * 3600.0

# Times a request may name, in Unix seconds: the platform stores nothing older than 1970 or
# anywhere near year 9999 (where Python's and PostgreSQL's calendars end).
SUPPORTED_TIMES: Final = (0.0, 253370764800.0)  # 1970-01-01T00:00:00Z, 9999-01-01T00:00:00Z
_SUPPORTED_TEXT: Final = "1970-01-01T00:00:00Z to 9999-01-01T00:00:00Z"
# Characters PostgreSQL text cannot hold (NUL) and that UTF-8 cannot encode (surrogates).
_BAD_TEXT: Final = re.compile("[\x00\ud800-\udfff]")

_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_PLUS_LOST = re.compile(r" (\d{2}:?\d{2})$")  # "+07:00" sent unescaped arrives as " 07:00"


@dataclass(frozen=True, slots=True)
class TimeRange:
    """[start, end) in Unix seconds."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def check_text(name: str, text: str) -> str:
    """`text` when PostgreSQL can take it; `bad_parameter` for a NUL or a lone surrogate."""
    if _BAD_TEXT.search(text) is not None:
        raise HistoryQueryError(
            "bad_parameter",
            f"{_shown(name)} holds a character the database cannot take"
            " (NUL, or an unpaired surrogate)",
        )
    return text


def _shown(text: str) -> str:
    """A client's text quoted for an error detail: short and escaped."""
    return ascii(text[:60]) + ("…" if len(text) > 60 else "")


def parse_time(name: str, text: str) -> float:
    """Unix seconds from RFC 3339 with an offset (or Z) or from a plain number of seconds,
    within SUPPORTED_TIMES."""
    text = text.strip()
    if _NUMBER.match(text):
        value = float(text)
    else:
        text = _PLUS_LOST.sub(r"+\1", text)
        try:
            parsed = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError as exc:
            raise HistoryQueryError(
                "bad_range",
                f"{name}: {_shown(text)} is not RFC 3339 with an offset or Unix seconds",
            ) from exc
        if parsed.tzinfo is None:
            raise HistoryQueryError(
                "bad_range", f"{name}: {_shown(text)} has no offset (add Z or +07:00)"
            )
        value = parsed.timestamp()
    low, high = SUPPORTED_TIMES
    if not math.isfinite(value) or not low <= value <= high:
        raise HistoryQueryError(
            "bad_range",
            f"{name}: {_shown(text)} is outside the supported range {_SUPPORTED_TEXT}",
        )
    return value


def time_range(
    query: Mapping[str, str], *, now: float, default: float, maximum: float | None = None
) -> TimeRange:
    """`from`/`to` of a query: `to` defaults to now, `from` to `default` seconds before it."""
    end = parse_time("to", query["to"]) if "to" in query else now
    start = parse_time("from", query["from"]) if "from" in query else end - default
    if start >= end:
        raise HistoryQueryError("bad_range", "`from` must be before `to`")
    if maximum is not None and end - start > maximum:
        raise HistoryQueryError(
            "range_too_long",
            f"at most {maximum / 86400:g} days per request (asked {(end - start) / 86400:.1f})",
            status=422,
        )
    return TimeRange(start, end)


def page_size(query: Mapping[str, str]) -> int:
    """`limit`: 1..MAX_PAGE_SIZE, default DEFAULT_PAGE_SIZE."""
    text = query.get("limit")
    if text is None:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(text)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise HistoryQueryError(
            "bad_page_size", f"limit must be an integer from 1 to {MAX_PAGE_SIZE} (got {text!r})"
        )
    return size


def to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def format_time(moment: datetime | float | None) -> str | None:
    """RFC 3339 in UTC (`…Z`), to the microsecond when there is one; None stays None."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = to_datetime(moment)
    text = moment.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def encode_cursor(key: list[Any]) -> str:
    """An opaque page cursor from the last row's sort key (datetimes kept exactly)."""
    plain = [{"t": v.isoformat()} if isinstance(v, datetime) else v for v in key]
    raw = json.dumps(plain, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _cursor_value_ok(value: object) -> bool:
    if type(value) is int:
        return -(2**63) <= value < 2**63  # a bigint column
    return type(value) is str and _BAD_TEXT.search(value) is None


def decode_cursor(text: str, shape: tuple[type, ...]) -> list[Any]:
    """The sort key of a cursor from `encode_cursor`; `shape` gives each element's type."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        plain = json.loads(raw)
        if not isinstance(plain, list) or len(plain) != len(shape):
            raise ValueError("wrong length")
        key: list[Any] = []
        for value, kind in zip(plain, shape, strict=True):
            if kind is datetime:
                moment = datetime.fromisoformat(value["t"])
                if moment.tzinfo is None:
                    raise ValueError("naive time")
                low, high = SUPPORTED_TIMES
                if not low <= moment.timestamp() <= high:
                    raise ValueError("time out of range")
                key.append(moment)
            elif type(value) is not kind or not _cursor_value_ok(value):
                raise ValueError("bad element")
            else:
                key.append(value)
    except (ValueError, TypeError, KeyError, binascii.Error, RecursionError) as exc:
        raise HistoryQueryError(
            "bad_cursor", "cursor is not one this API gave (ask for the first page again)"
        ) from exc
    return key
