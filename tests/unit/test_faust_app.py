"""The worker's Faust app and adapter: what they change in Faust (no connection is made)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from prometheus_client import CollectorRegistry

from foundation.contract.catalog import load_catalog
from foundation.contract.topics import BrokerEpoch
from streams.checkpoints import MemoryCheckpointStore
from streams.faust_adapter import FETCH_MAX_WAIT_MS, Transport, _ConsumerThread
from streams.faust_app import WorkerConfig, create_app


def _app(tmp_path: Path, *, short_fetch_wait: bool = True) -> faust.App:
    config = WorkerConfig(
        bootstrap_servers="127.0.0.1:9", group="g", epoch=BrokerEpoch("e", 1), partitions=4,
        replication_factor=1, data_dir=tmp_path, short_fetch_wait=short_fetch_wait,
    )  # fmt: skip
    app, _worker, _metrics = create_app(
        config, catalog=load_catalog(), store=MemoryCheckpointStore(), registry=CollectorRegistry()
    )
    return app


def _consumer_settings(consumer: Any) -> dict[str, Any]:
    # Tests may look inside: aiokafka keeps its constructor arguments in private attributes.
    ignored = {"_loop", "_client", "_coordinator", "_fetcher", "_subscription", "_closed"}
    return {
        name: value
        for name, value in vars(consumer).items()
        if name not in ignored and isinstance(value, (str, int, float, bool, type(None), list))
    }


async def test_the_worker_app_uses_the_adapters_transport(tmp_path: Path) -> None:
    """`ioc://` broker URLs select the transport registered under faust.transports."""
    app = _app(tmp_path)
    assert type(app.transport) is Transport
    assert [str(url) for url in app.conf.broker] == ["ioc://127.0.0.1:9"]


async def test_without_the_short_wait_the_app_runs_fausts_own_transport(tmp_path: Path) -> None:
    """`kafka://` broker URLs: Faust's aiokafka transport, its consumer unchanged."""
    app = _app(tmp_path, short_fetch_wait=False)
    assert type(app.transport) is faust_aiokafka.Transport
    assert [str(url) for url in app.conf.broker] == ["kafka://127.0.0.1:9"]


async def test_its_consumer_is_fausts_own_but_for_a_short_fetch_wait(tmp_path: Path) -> None:
    """The restated arguments match faust-streaming's own consumer: only the wait differs."""
    app = _app(tmp_path)
    # The factories called on a stand-in thread: a real consumer thread starts its own loop.
    thread: Any = SimpleNamespace(app=app, consumer=SimpleNamespace(in_transaction=False))
    transport: Any = app.transport
    mine = _ConsumerThread._create_worker_consumer(thread, transport)
    faust_own = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer(thread, transport)
    try:
        assert mine._fetch_max_wait_ms == FETCH_MAX_WAIT_MS
        assert faust_own._fetch_max_wait_ms == 1500
        expected = _consumer_settings(faust_own)
        expected["_fetch_max_wait_ms"] = FETCH_MAX_WAIT_MS
        assert _consumer_settings(mine) == expected
    finally:  # never started: stop() only closes what the constructor opened
        await mine.stop()
        await faust_own.stop()


async def test_the_stateful_topics_are_acknowledged_by_the_stages(tmp_path: Path) -> None:
    """Faust commits acknowledged records only: every topic of the worker keeps acks on."""
    app = _app(tmp_path)
    topics = {name for agent in app.agents.values() for name in agent.channel.topics}
    assert {"ioc.events.health", "ioc.internal.kpi-partials", "ioc.internal.alert-input"} <= topics
    assert all(agent.channel.acks for agent in app.agents.values())
