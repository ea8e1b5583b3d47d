"""Retry policy: exponential backoff with a cap and jitter, and what is worth retrying."""

from __future__ import annotations

import pytest

from alerts.notifier.backoff import RetryPolicy, classify_http_status


def test_schedule_doubles_from_the_base_up_to_the_cap() -> None:
    """1, 2, 4, 8 … seconds between attempts, never more than the cap."""
    policy = RetryPolicy(max_attempts=8, base=1.0, factor=2.0, cap=30.0)
    assert policy.schedule() == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_max_attempts_counts_every_try() -> None:
    """With 3 attempts there are 2 waits, and the 3rd failure gives up."""
    policy = RetryPolicy(max_attempts=3, base=0.5)
    assert policy.schedule() == [0.5, 1.0]
    assert not policy.gives_up(2)
    assert policy.gives_up(3)


@pytest.mark.parametrize(("spread", "expected"), [(0.0, 3.6), (0.5, 4.0), (1.0, 4.4)])
def test_jitter_stays_within_its_band(spread: float, expected: float) -> None:
    """±10 % jitter around the third delay (4 s)."""
    policy = RetryPolicy(base=1.0, jitter=0.1)
    assert policy.delay(3, spread=spread) == pytest.approx(expected)


def test_a_servers_retry_after_wins_when_longer() -> None:
    """A 429 with retry_after 20 s waits 20 s, not the 1 s backoff; a shorter one is ignored."""
    policy = RetryPolicy(base=1.0, jitter=0.0)
    assert policy.delay(1, retry_after=20.0) == 20.0
    assert policy.delay(4, retry_after=0.5) == 8.0


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "sent"),
        (204, "sent"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (429, "retry"),
        (408, "retry"),
        (400, "permanent"),
        (401, "permanent"),
        (403, "permanent"),
        (404, "permanent"),
        (302, "permanent"),
    ],
)
def test_4xx_other_than_408_and_429_is_permanent(status: int, outcome: str) -> None:
    """Only timeouts, throttling and server errors are retried."""
    assert classify_http_status(status) == outcome
