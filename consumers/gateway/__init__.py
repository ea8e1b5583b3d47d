"""The WebSocket gateway and the video wall page it serves (`ioc gateway`).

Pure core: `channels`, `protocol`, `state`, `tokens`, `offsets`, `wall_config` (no I/O);
`fanout` (per-client outboxes, asyncio only); thin I/O: `feed` (Kafka), `coldstart`
(PostgreSQL), `actions` (Kafka producer), `server` (websockets), `app` (composition).
"""

from consumers.gateway.app import GatewayConfig, run_gateway

__all__ = ["GatewayConfig", "run_gateway"]
