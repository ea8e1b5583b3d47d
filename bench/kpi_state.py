"""The KPI engine's state over simulated time: p95 as counted values against every value.

    python bench/kpi_state.py [--rate 500] [--minutes 80] [--sample 10]

Feeds the simulators' events of all 11 sectors (simulated time, as fast as the machine goes)
through the worker's two pure stages as `ioc worker` runs them: stage 1 (`PartitionPanes`) folds
each event in, every 0.1 s of simulated time its changed panes travel as JSON to stage 2
(`SeriesBook`), which publishes what is due. Two variants, each in a process of its own (run
side by side), on the same events:
  (a) baseline: p95 windows keep every value (as before counted states);
  (b) today's p95 state: the window's distinct values and their counts.
Every `--sample` simulated minutes it prints, per variant: the process's RSS, the JSON size of
the two stages' checkpoints, and the bytes of partials sent per simulated second since the last
sample. The p95 windows of the catalog are 30 min and 1 h, so from ~70 min on every window
holding values has closed at least once and the state has its steady size.
Last lines: `ratio: rss growth counted/every-value`, `ratio: checkpoint counted/every-value` and
`ratio: partial bytes counted/every-value` (at the last sample), and whether the p95 points of the
two variants were equal.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from bench.common import machine
from foundation.contract.catalog import load_catalog
from foundation.contract.envelope import ContractIndex, parse_record
from producers.simulators import Simulation
from streams.aggregations import AGGREGATORS, Aggregator, p95
from streams.kpi_engine import PanePartial, PartitionPanes, SeriesBook
from streams.kpi_plan import KpiPlan
from streams.records import encode_entries

START = 1_800_000_000.0  # simulated time of the first event (2027-01-15 08:00 UTC)
FLUSH = 0.1  # `ioc worker`'s flush interval (streams/faust_app.py)


def _every_value_add(state: list[float], value: Any, _ts: float) -> list[float]:
    bisect.insort(state, value)
    return state


EVERY_VALUE_P95 = Aggregator(
    list,
    _every_value_add,
    lambda a, b: sorted(a + b),
    lambda state, _seconds: p95(state),
    list,
    lambda state, count: len(state) == count,
)


def run(variant: str, rate: float, minutes: float, sample: float, seed: int) -> None:
    """One variant; prints a JSON line per sample, then one with its p95 points."""
    catalog = load_catalog()
    aggregators = dict(AGGREGATORS)
    if variant == "every-value":
        aggregators["p95"] = EVERY_VALUE_P95
    plan = KpiPlan(catalog, aggregators=aggregators)
    index = ContractIndex(catalog)
    stage1 = PartitionPanes(plan, "bench:0")
    book = SeriesBook(plan)
    process = psutil.Process()
    p95_keys = {key for key, spec in plan.by_key.items() if spec.aggregation == "p95"}
    points: dict[str, float | None] = {}
    next_flush, next_sample, end = START + FLUSH, START + sample * 60, START + minutes * 60
    offset = events = partial_bytes = 0
    gc.collect()
    rss_start = process.memory_info().rss

    def flush(now: float) -> int:
        partials = [p.to_json() for p in stage1.drain(now)]
        if not partials:
            return 0
        encoded = encode_entries(partials)  # as the worker encodes a partials record
        for raw in json.loads(encoded):
            book.apply(PanePartial.from_json(raw), now=now)
        for point in book.due(now):  # provisional ones too: both variants emit at the same times
            if point.kpi in p95_keys:
                points[f"{point.series}@{point.window_start:.0f}#{point.revision}"] = point.value
        return len(encoded)

    for emission in Simulation(catalog, rate=rate, seed=seed, start=START).emissions():
        now = emission.at
        while next_flush <= now:
            partial_bytes += flush(next_flush)
            next_flush += FLUSH
        if now >= next_sample:
            gc.collect()
            checkpoint = len(json.dumps(stage1.snapshot())) + len(json.dumps(book.snapshot()))
            print(json.dumps({
                "minute": round((next_sample - START) / 60), "events": events,
                "rss": process.memory_info().rss - rss_start, "checkpoint": checkpoint,
                "partial_bytes_per_s": partial_bytes / (sample * 60),
            }), flush=True)  # fmt: skip
            partial_bytes = 0
            next_sample += sample * 60
        if now >= end:
            break
        if emission.defect is not None or emission.raw is not None:
            continue
        result = parse_record(emission.line(), index, now=now, key=emission.source)
        stage1.add(result.events, offset=offset, now=now)
        offset += 1
        events += len(result.events)
    print(json.dumps({"points": points}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="simulators' rate (ev/s)")
    parser.add_argument("--minutes", type=float, default=80.0, help="simulated minutes")
    parser.add_argument("--sample", type=float, default=10.0, help="simulated minutes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variant", choices=("every-value", "counted"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run(args.variant, args.rate, args.minutes, args.sample, args.seed)
        return

    options = ["--rate", str(args.rate), "--minutes", str(args.minutes),
               "--sample", str(args.sample), "--seed", str(args.seed)]  # fmt: skip
    children = {
        variant: subprocess.Popen(
            [sys.executable, __file__, *options, "--variant", variant],
            stdout=subprocess.PIPE,
            text=True,
        )
        for variant in ("every-value", "counted")
    }
    lines = {variant: child.communicate()[0].splitlines() for variant, child in children.items()}
    if any(child.returncode for child in children.values()):
        raise SystemExit("a variant failed (its error is above)")
    samples = {variant: [json.loads(line) for line in out[:-1]] for variant, out in lines.items()}
    points = {variant: json.loads(out[-1])["points"] for variant, out in lines.items()}

    print(f"machine: {machine()}; simulators at --rate {args.rate:g}, {args.minutes:g} simulated "
          f"minutes, stage 1 → JSON → stage 2 every {FLUSH} s")  # fmt: skip
    print(
        "minute  events      | every value: RSS +MiB  checkpoint KiB  partials KiB/s"
        " | counted: RSS +MiB  checkpoint KiB  partials KiB/s"
    )
    for old, new in zip(samples["every-value"], samples["counted"], strict=True):
        print(
            f"{old['minute']:>6}  {old['events']:>10,} | {old['rss'] / 2**20:>21.1f}"
            f"  {old['checkpoint'] / 1024:>14,.0f}  {old['partial_bytes_per_s'] / 1024:>14,.1f}"
            f" | {new['rss'] / 2**20:>17.1f}  {new['checkpoint'] / 1024:>14,.0f}"
            f"  {new['partial_bytes_per_s'] / 1024:>14,.1f}"
        )
    old, new = samples["every-value"][-1], samples["counted"][-1]
    same = points["every-value"] == points["counted"]
    print(f"p95 points: {len(points['counted'])}, equal in both variants: {same}")
    print(f"ratio: rss growth counted/every-value = {new['rss'] / max(old['rss'], 1):.2f}")
    print(f"ratio: checkpoint counted/every-value = {new['checkpoint'] / old['checkpoint']:.2f}")
    ratio = new["partial_bytes_per_s"] / old["partial_bytes_per_s"]
    print(f"ratio: partial bytes counted/every-value = {ratio:.2f}")
    if not same:
        raise SystemExit("the variants' p95 points differ")


if __name__ == "__main__":
    main()
