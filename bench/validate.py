"""Envelope validation speed next to plain `json.loads` of the same bytes (simulator events).

    python bench/validate.py [--events N]

Batch records of 100 events (~22 KB) and of 1,000 (~216 KB, as the SDK fills them at full
speed: over the 64 KiB event limit, so each event's size is taken too) are timed as well.
Last line: `ratio: validate/json-loads = X.XX` (time per event of validation, which
includes decoding, over time per event of `json.loads`). Target: ≤ 3.0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import best_of, machine, simulated_events
from foundation.contract.catalog import load_catalog
from foundation.contract.envelope import ContractIndex, parse_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    catalog = load_catalog()
    index = ContractIndex(catalog)
    singles = simulated_events(catalog, args.events)
    count = len(singles)
    # The same events as batch records of one source: 100 or 1,000 events per record.
    by_source: dict[str, list[bytes]] = {}
    for raw in singles:
        by_source.setdefault(json.loads(raw)["source"], []).append(raw)

    def records(size: int) -> list[bytes]:
        return [
            b"[" + b",".join(group[i : i + size]) + b"]"
            for group in by_source.values()
            for i in range(0, len(group), size)
        ]

    batches, large = records(100), records(1000)
    now = time.time()
    accepted = sum(len(parse_record(raw, index, now=now).events) for raw in singles)
    if accepted != count:
        raise SystemExit(
            f"only {accepted} of {count} simulator events are valid: fix the bench input"
        )

    loads = json.loads

    def loads_singles() -> None:
        for raw in singles:
            loads(raw)

    def validate_singles() -> None:
        for raw in singles:
            parse_record(raw, index, now=now)

    def loads_batches() -> None:
        for raw in batches:
            loads(raw)

    def validate_batches() -> None:
        for raw in batches:
            parse_record(raw, index, now=now)

    def validate_large() -> None:
        for raw in large:
            parse_record(raw, index, now=now)

    t_loads = best_of(args.rounds, loads_singles)
    t_validate = best_of(args.rounds, validate_singles)
    t_loads_b = best_of(args.rounds, loads_batches)
    t_validate_b = best_of(args.rounds, validate_batches)
    t_loads_l = best_of(args.rounds, lambda: [loads(raw) for raw in large])
    t_validate_l = best_of(args.rounds, validate_large)
    size = sum(map(len, singles)) / count
    print(f"machine: {machine()}")
    print(f"events: {count:,} simulator events of 11 sectors, {size:.0f} bytes each on average")
    print(f"json.loads, one event per record:     {count / t_loads:>10,.0f} events/s")
    print(f"validate,   one event per record:     {count / t_validate:>10,.0f} events/s")
    print(f"json.loads, 100 events per record:    {count / t_loads_b:>10,.0f} events/s")
    print(f"validate,   100 events per record:    {count / t_validate_b:>10,.0f} events/s")
    print(f"json.loads, 1,000 events per record:  {count / t_loads_l:>10,.0f} events/s")
    print(f"validate,   1,000 events per record:  {count / t_validate_l:>10,.0f} events/s")
    print(f"ratio (batched): validate/json-loads = {t_validate_b / t_loads_b:.2f}")
    print(f"ratio (1,000 per record): validate/json-loads = {t_validate_l / t_loads_l:.2f}")
    print(f"ratio: validate/json-loads = {t_validate / t_loads:.2f}")


if __name__ == "__main__":
    main()
