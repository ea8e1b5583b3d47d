"""The worker's Faust app: what it changes in Faust's consumer (no connection is made)."""

from __future__ import annotations

from pathlib import Path

from faust.types import TP
from prometheus_client import CollectorRegistry

from foundation.contract.catalog import load_catalog
from streams.checkpoints import MemoryCheckpointStore
from streams.faust_app import WorkerConfig, create_app


def _app(tmp_path: Path) -> object:
    config = WorkerConfig(
        bootstrap_servers="127.0.0.1:9", group="g", epoch="e", partitions=4,
        replication_factor=1, data_dir=tmp_path,
    )  # fmt: skip
    app, _worker, _metrics = create_app(
        config, catalog=load_catalog(), store=MemoryCheckpointStore(), registry=CollectorRegistry()
    )
    return app


async def test_faust_does_not_drop_records_of_the_worker_topics_by_read_offset(
    tmp_path: Path,
) -> None:
    """The stages filter by offset themselves; the officers' actions keep Faust's filter."""
    consumer = _app(tmp_path).consumer  # type: ignore[attr-defined]
    read_offsets = consumer._read_offset
    for topic in ("ioc.events.health", "ioc.internal.kpi-partials", "ioc.internal.alert-input"):
        read_offsets[TP(topic, 0)] = 5
        # _drain_messages reads through the bound __getitem__: None means "drop nothing".
        assert read_offsets.__getitem__(TP(topic, 0)) is None
    read_offsets[TP("ioc.alert-actions", 0)] = 7
    assert read_offsets.__getitem__(TP("ioc.alert-actions", 0)) == 7
    assert read_offsets.__getitem__(TP("ioc.alert-actions", 1)) is None


async def test_faust_rewinds_ask_the_stages_where_to_resume(tmp_path: Path) -> None:
    app = _app(tmp_path)
    resume = app.ioc_resume_offsets  # type: ignore[attr-defined]
    assert resume() == {}  # nothing assigned yet
