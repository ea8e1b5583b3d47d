"""Alert engine cost on the Bình Phước catalog: points/s, tick and snapshot times (one core).

    python bench/alert_engine.py [--points N] [--seed S]

Every series of the catalog (a KPI × district, or the KPI alone) gets provisional points in
turn with random values, so many rules raise, clear and flap. Last line:
`ratio: engine points/s / worker points/s = X` — against the most the worker can publish
(one provisional point a second per series); it must stay far above 1.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerts.engine import AlertEngine
from bench.common import machine
from foundation.contract.catalog import load_catalog

T0 = 1_800_000_000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    catalog = load_catalog()
    engine = AlertEngine(catalog)
    rng = random.Random(args.seed)
    series: list[tuple[str, str, float]] = []
    for sector in catalog.sectors:
        for kpi in sector.kpis:
            groups = [d.code for d in catalog.districts] if kpi.group_by == ["district"] else ["*"]
            series += [(f"{sector.id}.{kpi.id}", g, kpi.window.size) for g in groups]
    revisions: dict[tuple[str, str, float], int] = {}
    records: list[tuple[dict[str, Any], float]] = []
    for i in range(args.points):
        kpi_key, group, size = series[i % len(series)]
        now = T0 + i * 0.01
        start = (now // size) * size
        key = (kpi_key, group, start)
        revisions[key] = revisions.get(key, -1) + 1
        record = {
            "kind": "kpi", "series": f"{kpi_key}|{group}", "kpi": kpi_key,
            "sector": kpi_key.split(".")[0],
            "group": group, "window_start": start, "window_end": start + size,
            "value": rng.uniform(0, 300), "count": 5, "final": False,
            "revision": revisions[key], "emitted_at": now, "newest": now,
        }  # fmt: skip
        records.append((record, now))

    began = time.perf_counter()
    transitions = sum(len(engine.on_kpi(record, now)) for record, now in records)
    rate = len(records) / (time.perf_counter() - began)
    last = records[-1][1]
    began = time.perf_counter()
    for second in range(1000):
        engine.tick(last + second)
    tick_ms = time.perf_counter() - began  # per tick: /1000 × 1000 ms
    began = time.perf_counter()
    text = json.dumps(engine.snapshot(), allow_nan=False)
    snapshot_ms = (time.perf_counter() - began) * 1000

    print(machine())
    print(f"series: {len(series)}, points: {len(records)}, transitions: {transitions}")
    print(f"on_kpi: {rate:,.0f} points/s")
    print(f"tick: {tick_ms:.2f} ms with {len(engine.alerts())} alerts")
    print(f"snapshot: {len(text) / 1024:.0f} KiB JSON in {snapshot_ms:.1f} ms")
    print(f"ratio: engine points/s / worker points/s = {rate / len(series):.0f}")


if __name__ == "__main__":
    main()
