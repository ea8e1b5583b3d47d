"""Grouping into digests: due at created + group_wait, everything pending goes together."""

from __future__ import annotations

from alerts.notifier.grouping import PendingDelivery, due_digests, next_due

WAIT = 30.0


def pending(row_id: int, created: float, recipient: str = "officer", channel: str = "telegram"):
    return PendingDelivery(row_id, recipient, channel, "1001", created + WAIT)


def test_two_alerts_within_group_wait_make_one_digest() -> None:
    """Alerts at t=0 and t=10 for one recipient: nothing at t=29, one message at t=30."""
    rows = [pending(1, 0.0), pending(2, 10.0)]
    assert due_digests(rows, now=29.9) == []
    [digest] = due_digests(rows, now=30.0)
    assert digest.ids == (1, 2)
    assert (digest.recipient, digest.channel) == ("officer", "telegram")


def test_an_alert_after_the_digest_waits_for_its_own_group_wait() -> None:
    """Once rows 1-2 went out, row 3 (t=35) is due at t=65, not at once."""
    later = [pending(3, 35.0)]
    assert due_digests(later, now=40.0) == []
    assert next_due(later) == 65.0
    assert [d.ids for d in due_digests(later, now=65.0)] == [(3,)]


def test_each_recipient_and_channel_is_its_own_group() -> None:
    """Two recipients and two channels: three messages, most overdue first."""
    rows = [
        pending(1, 5.0, "vice"),
        pending(2, 0.0, "officer"),
        pending(3, 1.0, "officer", "email"),
        pending(4, 2.0, "officer"),
    ]
    plans = due_digests(rows, now=100.0)
    assert [(p.recipient, p.channel, p.ids) for p in plans] == [
        ("officer", "telegram", (2, 4)),
        ("officer", "email", (3,)),
        ("vice", "telegram", (1,)),
    ]


def test_a_group_being_sent_is_skipped() -> None:
    """A recipient address with a message in flight gets no second one meanwhile."""
    rows = [pending(1, 0.0)]
    assert due_digests(rows, now=100.0, busy={("officer", "telegram", "1001")}) == []
    assert next_due(rows, busy={("officer", "telegram", "1001")}) is None


def test_a_new_alert_joins_a_retry_waiting_for_its_time() -> None:
    """Row 1 failed and retries at t=50; row 2 (t=40, due 70) goes out with it at t=50."""
    rows = [PendingDelivery(1, "officer", "telegram", "1001", 50.0), pending(2, 40.0)]
    assert [d.ids for d in due_digests(rows, now=50.0)] == [(1, 2)]


def test_large_groups_are_split() -> None:
    """120 pending rows for one address go out as messages of at most 50."""
    rows = [pending(i, 0.0) for i in range(1, 121)]
    sizes = [len(d.ids) for d in due_digests(rows, now=WAIT, max_items=50)]
    assert sizes == [50, 50, 20]
