"""`ioc alerts`: list the current alerts; ack, assign, note, resolve, escalate, silence (as
actions)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from foundation.errors import ActionNotConfirmedError, BrokerUnreachableError, SettingsError
from foundation.settings import Settings

__all__ = ["register"]

_STATES = ("pending", "firing", "acknowledged", "resolved", "open")
# Actions on one alert, each applied as a transition of the same name on ioc.alerts (silences
# have none of their own: they flag the alerts they match).
_CONFIRMED = frozenset({"ack", "assign", "note", "resolve", "escalate"})


def register(commands: Any) -> None:
    alerts = commands.add_parser(
        "alerts", help="current alerts (from the database); act on one with a sub-command"
    )
    alerts.add_argument(
        "--state", choices=_STATES, default="open",
        help="which alerts to list (default: open = not resolved)",
    )  # fmt: skip
    alerts.add_argument("--sector", help="only this sector")
    alerts.add_argument("--json", action="store_true", help="one JSON object per line")
    alerts.set_defaults(run=_cmd_list)
    actions = alerts.add_subparsers(dest="alerts_command", metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        parser.add_argument("--by", required=True, help="your name, as the audit trail shows it")
        if name in _CONFIRMED:
            parser.add_argument(
                "--wait", type=float, default=10.0, metavar="SECONDS",
                help="wait this long for the worker to apply it (default 10; 0: do not wait)",
            )  # fmt: skip
        parser.set_defaults(run=_cmd_action, action=name)
        return parser

    ack = action("ack", "acknowledge an alert: stops its escalation")
    ack.add_argument("fingerprint")
    ack.add_argument("--note", help="a note kept with the alert")
    assign = action("assign", "assign an alert to an officer")
    assign.add_argument("fingerprint")
    assign.add_argument("--to", required=True, dest="assignee", help="the officer's name")
    note = action("note", "add a note to an alert")
    note.add_argument("fingerprint")
    note.add_argument("--text", required=True, dest="note")
    resolve = action("resolve", "resolve an alert by hand")
    resolve.add_argument("fingerprint")
    resolve.add_argument("--note", help="why")
    escalate = action("escalate", "hand an alert to the next escalation level now")
    escalate.add_argument("fingerprint")
    escalate.add_argument("--note", help="why")
    silence = action("silence", "hold notifications of matching alerts for a while")
    silence.add_argument(
        "--match", action="append", required=True, metavar="LABEL=VALUE",
        help="label matcher (sector, kpi, district, source, rule); repeatable, all must match",
    )  # fmt: skip
    silence.add_argument("--for", dest="duration", required=True, help="e.g. 30m, 2h")
    silence.add_argument("--reason", required=True)
    unsilence = action("unsilence", "end a silence early")
    unsilence.add_argument("silence_id")


async def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg
    from psycopg.rows import dict_row

    from foundation.contract.alerts import SEVERITY_LABELS, SEVERITY_RANK, STATE_LABELS
    from foundation.contract.catalog import load_catalog
    from foundation.errors import DatabaseError, DatabaseUnreachableError, UnknownSectorError
    from ioc.runtime import resolve_database_url

    if args.sector is not None:
        catalog = load_catalog(settings.catalog)
        if catalog.sector(args.sector) is None:
            known = ", ".join(s.id for s in catalog.sectors)
            raise UnknownSectorError(f"no sector {args.sector!r} in the catalog (known: {known})")
    url = resolve_database_url(settings)
    query = "SELECT record FROM alerts_current WHERE true"
    params: list[object] = []
    if args.state == "open":
        query += " AND state <> 'resolved'"
    else:
        query += " AND state = %s"
        params.append(args.state)
    if args.sector:
        query += " AND sector = %s"
        params.append(args.sector)
    query += " ORDER BY updated_at DESC LIMIT 500"
    try:
        conn = await psycopg.AsyncConnection.connect(
            url, connect_timeout=int(settings.connect_timeout), row_factory=dict_row
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnreachableError(f"cannot connect to the database: {exc}") from exc
    try:
        async with conn:
            cursor = await conn.execute(query, params)
            rows = [row["record"] for row in await cursor.fetchall()]
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot read alerts: {exc} (has `ioc db migrate` run?)") from exc
    rows.sort(key=lambda r: (-SEVERITY_RANK.get(r["severity"], 0), -r["started_at"]))
    if args.json:
        for record in rows:
            print(json.dumps(record, ensure_ascii=False))
        return 0
    if not rows:
        print("không có cảnh báo · no alerts")
        return 0
    now = time.time()
    for r in rows:
        since = _elapsed(now - r["started_at"])
        flags = "".join(
            f" [{flag}]" for flag, on in (
                ("dữ liệu cũ", r.get("stale")), ("dao động", r.get("flapping")),
                ("tạm im lặng", r.get("silenced_by")),
            ) if on
        )  # fmt: skip
        print(
            f"{r['fingerprint']}  {SEVERITY_LABELS[r['severity']][0]:<12} "
            f"{STATE_LABELS[r['state']][0]:<14} {since:>7}  {r['labels']['sector']:<12} "
            f"{r['message_vi']}{flags}"
        )
    return 0


async def _cmd_action(args: argparse.Namespace, settings: Settings) -> int:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from foundation.contract.alerts import STATE_LABELS, AlertAction, Fingerprint, Silence
    from foundation.contract.catalog import parse_duration
    from foundation.contract.topics import ALERT_ACTIONS
    from foundation.kafka_client import kafka_client_options
    from ioc.runtime import resolve_bootstrap_servers

    now = time.time()
    silence = None
    fingerprint = getattr(args, "fingerprint", None)
    if args.action == "silence":
        matchers = dict(_matcher(m) for m in args.match)
        try:
            seconds = parse_duration(args.duration)
        except ValueError as exc:
            raise SettingsError(f"--for: {exc}") from exc
        silence = Silence(
            id=f"sil-{uuid.uuid4().hex[:8]}", matchers=matchers, starts_at=now,
            ends_at=now + seconds, author=args.by, reason=args.reason,
        )  # fmt: skip
    elif args.action == "unsilence":
        silence = Silence(
            id=args.silence_id, matchers={}, starts_at=now, ends_at=now, author=args.by, reason=""
        )
    action = AlertAction(
        action_id=str(uuid.uuid4()),
        action=args.action,
        by=args.by,
        at=now,
        fingerprint=Fingerprint(fingerprint) if fingerprint else None,
        note=getattr(args, "note", None),
        assignee=getattr(args, "assignee", None),
        silence=silence,
    )
    bootstrap = resolve_bootstrap_servers(settings)
    options = kafka_client_options(settings)
    wait = max(0.0, getattr(args, "wait", 0.0))
    # Watch ioc.alerts from its end before sending, so the transition that applies the
    # action cannot slip past.
    watch = await _AppliedWatch.open(bootstrap, settings.connect_timeout, options) if wait else None
    try:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            request_timeout_ms=int(settings.connect_timeout * 1000),
            **options,
        )
        try:
            try:
                async with asyncio.timeout(settings.connect_timeout * 2):
                    await producer.start()
                    meta = await producer.send_and_wait(
                        ALERT_ACTIONS, action.encode(), key=action.key
                    )
            finally:
                await producer.stop()  # also after a failed start: the producer is open then too
        except (TimeoutError, KafkaError, OSError) as exc:
            raise BrokerUnreachableError(
                f"cannot publish the action to {bootstrap}: {exc}"
            ) from exc
        target = fingerprint or (silence.id if silence else "")
        stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
        print(
            f"đã gửi {args.action} {target} ({args.by}, {stamp}) · sent to "
            f"{ALERT_ACTIONS}@{meta.offset}",
            flush=True,
        )
        if watch is None or fingerprint is None:
            print("hệ thống áp dụng trong vài giây, xem `ioc alerts` · applied within seconds")
            return 0
        # The watch starts at the topic's end; `since` only steps over older transitions the
        # embedded broker's approximate end may show again, with room for clock skew.
        applied = await watch.applied(
            fingerprint, args.action, by=args.by, since=now - 60.0, timeout=wait
        )
    finally:
        if watch is not None:
            await watch.close()
    if applied is None:
        raise ActionNotConfirmedError(
            f"chưa thấy {args.action} {fingerprint} được áp dụng sau {wait:g} giây (có thể bị "
            "từ chối, xem `ioc alerts`) · "
            f"{args.action} {fingerprint}: not applied within {wait:g} s. The worker refuses an "
            "action that does not apply (an unknown fingerprint; ack of an alert not firing or "
            "already acknowledged; …: its log says which), or no worker runs; `ioc alerts` "
            "shows the alert as it is"
        )
    state_vi, state_en = STATE_LABELS[applied.state]
    print(f"đã áp dụng · applied: {fingerprint} {state_vi} · {state_en} (#{applied.seq})")
    return 0


class _AppliedWatch:
    """Reads ioc.alerts from its end for the transition that applies an action."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer

    @classmethod
    async def open(
        cls, bootstrap: str, timeout: float, options: dict[str, Any]
    ) -> _AppliedWatch | None:
        """A watch from the topic's end, or None when the topic does not exist (yet): a broker
        that lost its topics, before `ioc up` made them. The action is sent all the same."""
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaError

        from foundation.contract.topics import ALERTS

        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            request_timeout_ms=int(timeout * 1000),
            fetch_max_wait_ms=100,
            **options,
        )
        try:
            async with asyncio.timeout(timeout * 2):
                await consumer.start()
                await consumer.topics()  # metadata, so that the partitions are known
                partitions = [
                    TopicPartition(ALERTS, p) for p in consumer.partitions_for_topic(ALERTS) or ()
                ]
                if not partitions:
                    await consumer.stop()
                    return None
                consumer.assign(partitions)
                await consumer.seek_to_end(*partitions)
                for tp in partitions:
                    await consumer.position(tp)  # resolve the end now, before the send
        except (TimeoutError, KafkaError, OSError) as exc:
            await consumer.stop()
            raise BrokerUnreachableError(f"cannot read {ALERTS} from {bootstrap}: {exc}") from exc
        except BaseException:
            await consumer.stop()
            raise
        return cls(consumer)

    async def applied(
        self, fingerprint: str, transition: str, *, by: str, since: float, timeout: float
    ) -> Any:
        """The first transition of `fingerprint` of that kind by `by` at or after `since`,
        or None after `timeout` seconds. Records that break the contract are stepped over."""
        from aiokafka.errors import KafkaError

        from foundation.contract.alerts import AlertTransition, RecordError

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                batches = await self._consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            except KafkaError:
                await asyncio.sleep(min(left, 0.5))
                continue
            for records in batches.values():
                for record in records:
                    if record.key != fingerprint.encode():
                        continue
                    try:
                        found = AlertTransition.decode(record.value or b"")
                    except RecordError:
                        continue  # not a transition: step over it
                    if found.transition == transition and found.actor == by and found.at >= since:
                        return found
        return None

    async def close(self) -> None:
        await self._consumer.stop()


def _matcher(text: str) -> tuple[str, str]:
    label, sep, value = text.partition("=")
    if not sep or not label.strip() or not value.strip():
        raise SettingsError(f"--match: expected LABEL=VALUE, got {text!r}")
    return label.strip(), value.strip()


def _elapsed(seconds: float) -> str:
    minutes = int(max(0.0, seconds) // 60)
    if minutes < 60:
        return f"{minutes} phút"
    return f"{minutes // 60} giờ {minutes % 60:02d}"
