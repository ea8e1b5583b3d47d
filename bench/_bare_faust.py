"""Baseline (a): a bare Faust agent that only counts records. Run by bench/pipeline_worker.py.

python bench/_bare_faust.py BOOTSTRAP TOPIC COUNT RESULT.json
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import faust


def main() -> None:
    bootstrap, topic_name, count, result_path = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        Path(sys.argv[4]),
    )
    app = faust.App(
        f"bench-bare-{int(time.time() * 1000)}",
        broker=f"kafka://{bootstrap}",
        value_serializer="raw",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        store="memory://",
        datadir=str(result_path.parent / "faust-data"),  # not the working directory
    )
    topic = app.topic(*topic_name.split(","), value_serializer="raw")
    # Steady state: the time from the 20 % to the 80 % record (start-up and tail excluded).
    low, high = count // 5, count * 4 // 5
    seen = {"n": 0, "low": 0.0}

    @app.agent(topic)
    async def count_events(stream: Any) -> None:
        async for _value in stream:
            seen["n"] += 1
            if seen["n"] == low:
                seen["low"] = time.perf_counter()
            elif seen["n"] == high:  # the parent reads the result and terminates us
                elapsed = time.perf_counter() - seen["low"]
                write_result(result_path, {"events": high - low, "seconds": elapsed})

    with contextlib.suppress(SystemExit):
        faust.Worker(app, loglevel="error", quiet=True).execute_from_commandline()


def write_result(path: Path, result: dict[str, float]) -> None:
    path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
