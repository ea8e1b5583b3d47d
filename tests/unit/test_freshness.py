"""Source freshness with an injected clock: stale after silence, fresh again on the next event."""

from __future__ import annotations

from streams.freshness import SourceFreshness

SOURCES = {"his": ("health", 180.0), "cam": ("traffic", 30.0)}


def test_first_event_announces_fresh_and_silence_turns_stale_by_timer() -> None:
    tracker = SourceFreshness(SOURCES, now=0.0)
    tracker.seen("his", 10.0)
    assert [(c.source, c.state) for c in tracker.changes(10.0)] == [("his", "fresh")]
    assert [c.source for c in tracker.changes(189.9)] == ["cam"]  # his: not yet
    stale = tracker.changes(190.0)
    assert [(c.state, c.last_seen, c.changed_at) for c in stale] == [("stale", 10.0, 190.0)]
    assert tracker.changes(500.0) == []  # reported once


def test_a_source_never_heard_from_turns_stale_after_its_window() -> None:
    tracker = SourceFreshness(SOURCES, now=100.0)
    assert tracker.changes(129.0) == []
    (change,) = tracker.changes(130.0)
    assert (change.source, change.state, change.last_seen) == ("cam", "stale", None)


def test_a_stale_source_turns_fresh_on_its_next_event() -> None:
    tracker = SourceFreshness(SOURCES, now=0.0)
    tracker.changes(31.0)
    assert tracker.state("cam") == "stale"
    tracker.seen("cam", 40.0)
    assert [(c.source, c.state) for c in tracker.changes(40.0)] == [("cam", "fresh")]


def test_unknown_sources_are_ignored_and_state_survives_a_snapshot() -> None:
    tracker = SourceFreshness(SOURCES, now=0.0)
    tracker.seen("elsewhere", 1.0)
    tracker.seen("his", 5.0)
    tracker.changes(5.0)
    copy = SourceFreshness(SOURCES, now=1000.0)
    copy.restore(tracker.snapshot())
    assert copy.state("his") == "fresh"
    assert sorted((c.source, c.state) for c in copy.changes(186.0)) == [
        ("cam", "stale"),
        ("his", "stale"),
    ]


def test_sector_last_seen_is_the_latest_of_its_sources_published_at_most_once_a_second() -> None:
    from streams.freshness import SectorLastSeen

    book = SectorLastSeen(interval=1.0)
    book.seen("health", 10.0)
    book.seen("health", 12.0)
    book.seen("health", 11.0)  # an older maximum from another partition changes nothing
    assert [r.to_json() for r in book.due(12.0)] == [
        {"kind": "sector_seen", "sector": "health", "last_seen": 12.0, "emitted_at": 12.0}
    ]
    book.seen("health", 12.5)
    assert book.due(12.5) == []  # within the second
    assert [r.last_seen for r in book.due(13.0)] == [12.5]
    copy = SectorLastSeen()
    copy.restore(book.snapshot())
    copy.seen("health", 12.0)
    assert copy.due(20.0) == []  # nothing newer than what was restored


def test_sources_report_their_sectors_latest_arrival_once() -> None:
    tracker = SourceFreshness(SOURCES, now=0.0)
    tracker.seen("his", 5.0)
    tracker.seen("cam", 6.0)
    tracker.seen("his", 7.0)
    assert tracker.drain_recent() == {"health": 7.0, "traffic": 6.0}
    assert tracker.drain_recent() == {}
