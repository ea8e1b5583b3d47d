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
    )
    topic = app.topic(*topic_name.split(","), value_serializer="raw")
    seen = {"n": 0, "first": 0.0}

    @app.agent(topic)
    async def count_events(stream: Any) -> None:
        async for _value in stream:
            if seen["n"] == 0:
                seen["first"] = time.perf_counter()
            seen["n"] += 1
            if seen["n"] == count:  # the parent reads the result and terminates us
                elapsed = time.perf_counter() - seen["first"]
                write_result(result_path, {"count": count, "seconds": elapsed})

    with contextlib.suppress(SystemExit):
        faust.Worker(app, loglevel="error", quiet=True).execute_from_commandline()


def write_result(path: Path, result: dict[str, float]) -> None:
    path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
