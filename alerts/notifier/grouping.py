"""Which pending deliveries go out now, grouped per recipient into digests (pure).

A delivery is due at `created + group_wait` (or at its next retry). When the earliest
pending delivery of a recipient's address is due, *every* pending delivery of that address
goes out as one message: alerts that arrive within group_wait of the first share a digest,
and one arriving while a retry waits joins the retry.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

__all__ = ["DigestPlan", "PendingDelivery", "due_digests", "next_due"]

GroupKey = tuple[str, str, str]  # recipient, channel, address


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """A pending row of the delivery log, as far as grouping cares."""

    id: int
    recipient: str
    channel: str
    address: str
    due_at: float

    @property
    def key(self) -> GroupKey:
        return (self.recipient, self.channel, self.address)


@dataclass(frozen=True, slots=True)
class DigestPlan:
    """One message to send now: the deliveries (row ids, oldest first) it carries."""

    recipient: str
    channel: str
    address: str
    ids: tuple[int, ...]

    @property
    def key(self) -> GroupKey:
        return (self.recipient, self.channel, self.address)


def due_digests(
    pending: Iterable[PendingDelivery],
    *,
    now: float,
    busy: Collection[GroupKey] = (),
    max_items: int = 50,
) -> list[DigestPlan]:
    """The digests due at `now`, most overdue first; keys in `busy` are being sent already.

    A group larger than `max_items` is split into several messages.
    """
    groups: dict[GroupKey, list[PendingDelivery]] = {}
    for delivery in pending:
        groups.setdefault(delivery.key, []).append(delivery)
    plans: list[tuple[float, DigestPlan]] = []
    for key, rows in groups.items():
        first_due = min(r.due_at for r in rows)
        if key in busy or first_due > now:
            continue
        ids = sorted(r.id for r in rows)
        for start in range(0, len(ids), max_items):
            plan = DigestPlan(*key, ids=tuple(ids[start : start + max_items]))
            plans.append((first_due, plan))
    plans.sort(key=lambda p: (p[0], p[1].ids[0]))
    return [plan for _, plan in plans]


def next_due(pending: Iterable[PendingDelivery], busy: Collection[GroupKey] = ()) -> float | None:
    """When the next group falls due (None when nothing is pending)."""
    dues = [p.due_at for p in pending if p.key not in busy]
    return min(dues) if dues else None
