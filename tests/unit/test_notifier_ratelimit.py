"""Per-recipient rate limit: a sliding window with an injected clock."""

from __future__ import annotations

import pytest

from alerts.notifier.limits import RateLimiter


def test_excess_within_the_period_is_refused_then_allowed_after_it() -> None:
    """3 per 60 s: the 4th at t=30 is refused; at t=60.5 the first has left the window."""
    limiter = RateLimiter(limit=3, period=60)
    key = ("chu-tich", "telegram")
    for at in (0.0, 10.0, 20.0):
        assert limiter.allow(key, at)
        limiter.record(key, at)
    assert not limiter.allow(key, 30.0)
    assert not limiter.allow(key, 59.9)
    assert limiter.allow(key, 60.5)


def test_recipients_and_channels_are_limited_separately() -> None:
    """One recipient's flood does not hold back another's, nor his other channel."""
    limiter = RateLimiter(limit=1, period=60)
    limiter.record(("a", "telegram"), 0.0)
    assert not limiter.allow(("a", "telegram"), 1.0)
    assert limiter.allow(("a", "email"), 1.0)
    assert limiter.allow(("b", "telegram"), 1.0)


def test_seeding_from_the_delivery_log_survives_a_restart() -> None:
    """Sends recorded before a restart count against the limit (given out of order)."""
    limiter = RateLimiter(limit=2, period=60)
    limiter.seed([(("a", "zalo"), 50.0), (("a", "zalo"), 40.0)])
    assert not limiter.allow(("a", "zalo"), 70.0)
    assert limiter.allow(("a", "zalo"), 100.5)


@pytest.mark.parametrize(("limit", "period"), [(0, 60.0), (1, 0.0)])
def test_nonsense_limits_are_refused(limit: int, period: float) -> None:
    """A limit below 1 or an empty period is a programming error."""
    with pytest.raises(ValueError, match="limit"):
        RateLimiter(limit=limit, period=period)
