"""bench/pipeline_worker.py separates the pipeline's delay from the coalescing token bucket."""

from __future__ import annotations

import pytest

from bench.pipeline_worker import points_latency


def point(at: float, newest: float) -> dict[str, object]:
    return {
        "series": "s|*", "window_start": 0.0, "emitted_at": at, "newest": newest,
        "final": False,
    }  # fmt: skip


def test_the_bucket_hold_is_not_counted_as_pipeline_delay() -> None:
    """Each point below leaves 50 ms after it may: after its event, or after the bucket
    holds a token again (three spent at once, then one a second)."""
    points = [
        point(0.05, 0.0),  # the burst: three at once
        point(0.15, 0.1),
        point(0.25, 0.2),  # 0.2 of a token left
        point(1.10, 0.3),  # a token again at 1.05
        point(2.10, 1.2),  # 0.05 left at 1.10: a token again at 2.05
    ]
    total, processing = points_latency(points, steady=0.0)
    assert total == pytest.approx([0.05, 0.05, 0.05, 0.8, 0.9])
    assert processing == pytest.approx([0.05, 0.05, 0.05, 0.05, 0.05])
