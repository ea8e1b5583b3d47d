"""Prometheus metrics of the gateway, declared once from an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["GatewayMetrics"]

_MESSAGE_KINDS = ("update", "snapshot", "resync", "replay", "control", "heartbeat")


@dataclass(frozen=True)
class GatewayMetrics:
    """Every metric `ioc gateway` exports on /metrics (also the fan-out's FanoutMetrics)."""

    clients: Gauge
    clients_backed_up: Gauge
    clients_coalescing: Gauge
    messages_pushed: Counter
    items_pushed: Counter
    updates_queued: Counter
    push_latency: Histogram
    fanout_seconds: Histogram
    resyncs: Counter
    coalesced_updates: Counter
    slow_clients_closed: Counter
    records_in: Counter
    poison_records: Counter
    auth_failures: Counter
    actions: Counter
    series: Gauge
    open_alerts: Gauge
    _pushed_by_kind: dict[str, Counter]  # children resolved once: the fan-out calls per message

    @classmethod
    def create(cls, registry: CollectorRegistry) -> GatewayMetrics:
        messages_pushed = Counter(
            "ioc_gateway_messages_pushed",
            "Messages written to clients",
            ["type"],
            registry=registry,
        )
        return cls(
            clients=Gauge(
                "ioc_gateway_clients", "Connected WebSocket clients", ["role"], registry=registry
            ),
            clients_backed_up=Gauge(
                "ioc_gateway_clients_backed_up",
                "Clients whose connection could not take their messages at once (outbox in use)",
                registry=registry,
            ),
            clients_coalescing=Gauge(
                "ioc_gateway_clients_coalescing",
                "Clients whose outbox is full: their updates are folded into a pending resync",
                registry=registry,
            ),
            messages_pushed=messages_pushed,
            items_pushed=Counter(
                "ioc_gateway_items_pushed",
                "Items (KPI points, alerts, freshness records) written to clients",
                registry=registry,
            ),
            updates_queued=Counter(
                "ioc_gateway_updates_queued",
                "Update messages that waited in a client's outbox (not written at once)",
                registry=registry,
            ),
            push_latency=Histogram(
                "ioc_gateway_push_latency_seconds",
                "Messages that waited in a client's outbox: from queueing to written",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
                registry=registry,
            ),
            fanout_seconds=Histogram(
                "ioc_gateway_fanout_seconds",
                "One batch of Kafka records: from the fan-out's start to every subscriber "
                "written or queued",
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
                registry=registry,
            ),
            resyncs=Counter(
                "ioc_gateway_resyncs",
                "Resync messages: overflow (coalesced), gap (client asked), resume_gap",
                ["reason"],
                registry=registry,
            ),
            coalesced_updates=Counter(
                "ioc_gateway_coalesced_updates",
                "Items folded into a pending resync because a client's outbox was full",
                registry=registry,
            ),
            slow_clients_closed=Counter(
                "ioc_gateway_slow_clients_closed",
                "Clients closed (4408) because a send, or the answer to a ping, did not come"
                " in time",
                registry=registry,
            ),
            records_in=Counter(
                "ioc_gateway_records_in", "Kafka records read", ["topic"], registry=registry
            ),
            poison_records=Counter(
                "ioc_gateway_poison_records",
                "Kafka records stepped over because they break the contract (not JSON, wrong"
                " types, non-finite numbers, unknown sector, …); screens never see them",
                ["topic"],
                registry=registry,
            ),
            auth_failures=Counter(
                "ioc_gateway_auth_failures",
                "Connections refused at the handshake",
                ["reason"],
                registry=registry,
            ),
            actions=Counter(
                "ioc_gateway_actions",
                "Alert actions asked over the socket",
                ["action", "result"],
                registry=registry,
            ),
            series=Gauge("ioc_gateway_series", "KPI series known", registry=registry),
            open_alerts=Gauge("ioc_gateway_open_alerts", "Open alerts known", registry=registry),
            _pushed_by_kind={k: messages_pushed.labels(k) for k in _MESSAGE_KINDS},
        )

    def pushed(self, kind: str, items: int, latency: float) -> None:
        counter = self._pushed_by_kind.get(kind)
        (counter if counter is not None else self.messages_pushed.labels(kind)).inc()
        if items:
            self.items_pushed.inc(items)
        if kind == "update":  # only updates that waited in an outbox come here
            self.push_latency.observe(latency)

    def written_now(self, messages: int, items: int) -> None:
        self._pushed_by_kind["update"].inc(messages)
        self.items_pushed.inc(items)

    def queued(self) -> None:
        self.updates_queued.inc()

    def fanned_out(self, seconds: float) -> None:
        self.fanout_seconds.observe(seconds)

    def coalesced(self, items: int) -> None:
        self.coalesced_updates.inc(items)

    def resync(self, reason: str) -> None:
        self.resyncs.labels(reason).inc()

    def slow_client_closed(self) -> None:
        self.slow_clients_closed.inc()
