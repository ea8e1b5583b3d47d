"""The TimescaleDB path's SQL, checked against TimescaleDB's documented function signatures.

The integration tests run all of it on a real TimescaleDB (2.29, the storage tests'
`[timescaledb]` cases); these checks need no server and keep every call in the migrations'
`timescaledb` parts and in the generated job statements in line with the documentation:
function names, argument names, the documented order of positional arguments, required
arguments, and the type of each literal. The signatures were transcribed from the TimescaleDB
API reference (docs.timescale.com / tigerdata.com, api/hypertable/create_hypertable,
_partials/_dimension_info (by_range), api/data-retention/add_retention_policy,
remove_retention_policy, api/compression/add_compression_policy, remove_compression_policy,
ALTER TABLE (compression), api/continuous-aggregates/add_continuous_aggregate_policy,
remove_continuous_aggregate_policy, CREATE MATERIALIZED VIEW (continuous aggregate),
hyperfunctions/time_bucket, last).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pytest

from consumers.migrations import load_migrations, sql_for_path
from consumers.storage import StoragePolicy
from consumers.storage.timescale import (
    EVENT_IDS_PRUNE,
    ROLLUP_REFRESH,
    policy_statements,
    rollup_start_days,
    timescale_jobs,
)


@dataclass(frozen=True)
class Signature:
    """A documented function: arguments in declaration order with their types."""

    arguments: tuple[tuple[str, str], ...]
    required: frozenset[str]
    positional: int  # how many leading arguments the docs' samples pass by position
    names: dict[str, str] = field(default_factory=dict)

    def type_of(self, name: str) -> str:
        return dict(self.arguments)[name]


def _sig(args: str, required: str, positional: int) -> Signature:
    pairs = tuple(
        (name.strip(), kind.strip()) for name, kind in (part.split(":") for part in args.split(","))
    )
    return Signature(pairs, frozenset(required.split()), positional)


DOCUMENTED = {
    "create_hypertable": _sig(
        "relation:regclass, dimension:dimension_info, create_default_indexes:boolean,"
        " if_not_exists:boolean, migrate_data:boolean",
        "relation dimension",
        2,
    ),
    "by_range": _sig(
        "column_name:name, partition_interval:interval, partition_func:regproc", "column_name", 3
    ),
    "add_retention_policy": _sig(
        "relation:regclass, drop_after:interval, schedule_interval:interval,"
        " initial_start:timestamptz, timezone:text, if_not_exists:boolean,"
        " drop_created_before:interval",
        "relation",
        2,
    ),
    "remove_retention_policy": _sig("relation:regclass, if_exists:boolean", "relation", 2),
    "add_compression_policy": _sig(
        "hypertable:regclass, compress_after:interval, schedule_interval:interval,"
        " initial_start:timestamptz, timezone:text, if_not_exists:boolean,"
        " compress_created_before:interval, hypercore_use_access_method:boolean",
        "hypertable",
        2,
    ),
    "remove_compression_policy": _sig("hypertable:regclass, if_exists:boolean", "hypertable", 2),
    "add_continuous_aggregate_policy": _sig(
        "continuous_aggregate:regclass, start_offset:interval, end_offset:interval,"
        " schedule_interval:interval, if_not_exists:boolean, initial_start:timestamptz,"
        " timezone:text, include_tiered_data:boolean, buckets_per_batch:integer,"
        " max_batches_per_execution:integer, refresh_newest_first:boolean",
        "continuous_aggregate start_offset end_offset schedule_interval",
        1,
    ),
    "remove_continuous_aggregate_policy": _sig(
        "continuous_aggregate:regclass, if_exists:boolean", "continuous_aggregate", 2
    ),
    "time_bucket": _sig(
        "bucket_width:interval, ts:timestamptz, timezone:text, origin:timestamptz, offset:interval",
        "bucket_width ts",
        2,
    ),
    "last": _sig("value:any, time:timestamptz", "value time", 2),
}
# ALTER TABLE … SET (timescaledb.…) and CREATE MATERIALIZED VIEW … WITH (timescaledb.…) options.
COMPRESSION_OPTIONS = {"compress", "compress_orderby", "compress_segmentby",
                       "compress_chunk_time_interval"}  # fmt: skip
CAGG_OPTIONS = {"continuous", "materialized_only", "create_group_indexes", "finalized"}

TIMESCALE_SQL = "\n".join(
    sql_for_path(m.sql, "timescaledb") for m in load_migrations() if m.path_specific
)
PLAIN_SQL = sql_for_path(
    next(m.sql for m in load_migrations() if m.name == "storage"), "plain-postgresql"
)


@dataclass
class Call:
    function: str
    positional: list[str]
    named: dict[str, str]
    text: str


def _split_arguments(text: str) -> list[str]:
    parts, depth, quoted, current = [], 0, False, ""
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == "," and depth == 0 and not quoted:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def _calls(sql: str) -> list[Call]:
    """Every call of a documented function, with its arguments (nested calls included)."""
    found = []
    for match in re.finditer(r"\b(" + "|".join(DOCUMENTED) + r")\s*\(", sql, re.IGNORECASE):
        start, depth = match.end(), 1
        index = start
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[index], 0)
            index += 1
        positional: list[str] = []
        named: dict[str, str] = {}
        for argument in _split_arguments(sql[start : index - 1]):
            name, arrow, value = argument.partition("=>")
            if arrow:
                named[name.strip()] = value.strip()
            else:
                positional.append(argument)
        found.append(Call(match.group(1).lower(), positional, named, sql[match.start() : index]))
    return found


def _tables(sql: str) -> dict[str, set[str]]:
    """Tables and materialized views created by sql, with their columns."""
    out: dict[str, set[str]] = {}
    for match in re.finditer(r"CREATE TABLE (\w+) \((.*?)\n\)[^;]*;", sql, re.DOTALL):
        columns = {
            line.split()[0].strip('"')
            for line in match.group(2).splitlines()
            if line.strip() and not line.strip().startswith(("CONSTRAINT", "PRIMARY", "--"))
        }
        out[match.group(1)] = columns
    for match in re.finditer(r"CREATE MATERIALIZED VIEW (\w+)", sql):
        out[match.group(1)] = set()
    return out


_INTERVAL = re.compile(
    r"^INTERVAL '(\d+) (microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?"
    r"|months?|years?)'$"
)


def _check_type(kind: str, value: str, tables: dict[str, set[str]]) -> None:
    if kind == "regclass":
        match = re.fullmatch(r"'(\w+)'", value)
        assert match and match.group(1) in tables, f"{value} is not a relation created here"
    elif kind == "interval":
        assert _INTERVAL.match(value), f"{value} is not an INTERVAL literal"
    elif kind == "boolean":
        assert value.upper() in ("TRUE", "FALSE"), f"{value} is not a boolean"
    elif kind == "dimension_info":
        assert value.startswith("by_range("), f"{value} is not a dimension builder"
    elif kind == "name":
        assert re.fullmatch(r"'\w+'", value), f"{value} is not a column name literal"
    elif kind == "text":
        match = re.fullmatch(r"'([\w/+-]+)'", value)
        assert match, f"{value} is not a text literal"
        ZoneInfo(match.group(1))  # a real time zone
    elif kind in ("timestamptz", "any"):
        assert value, "empty argument"
    else:
        pytest.fail(f"no check for type {kind}")


def _all_calls() -> list[Call]:
    return _calls(TIMESCALE_SQL) + [c for s in policy_statements(StoragePolicy.default()) for c in
                                    _calls(s)]  # fmt: skip


def test_every_call_matches_its_documented_signature() -> None:
    """Names, order of positional arguments, required arguments and literal types all match."""
    tables = _tables(TIMESCALE_SQL)
    calls = _all_calls()
    assert {c.function for c in calls} == set(DOCUMENTED)  # each signature is exercised
    for call in calls:
        signature = DOCUMENTED[call.function]
        names = [name for name, _kind in signature.arguments]
        assert len(call.positional) <= signature.positional, call.text
        given = names[: len(call.positional)] + list(call.named)
        assert len(given) == len(set(given)), f"argument given twice: {call.text}"
        unknown = set(call.named) - set(names)
        assert not unknown, f"{call.function} has no argument {unknown}: {call.text}"
        missing = signature.required - set(given)
        assert not missing, f"{call.function} needs {missing}: {call.text}"
        for name, value in [*zip(names, call.positional, strict=False), *call.named.items()]:
            if call.function in ("time_bucket", "last") and name in ("ts", "value", "time"):
                continue  # column expressions
            _check_type(signature.type_of(name), value, tables)


def test_hypertables_cover_the_plain_tables_with_documented_options() -> None:
    """The same tables as the plain path, each a hypertable on its time column; compression
    options are documented ones on existing columns; caggs use documented options."""
    tables = _tables(TIMESCALE_SQL)
    plain = _tables(PLAIN_SQL)
    for name in ("events", "kpi_points", "dead_letters"):
        assert tables[name] == plain[name], name
    hypertables = {
        c.positional[0].strip("'"): _calls(c.positional[1])[0].positional
        for c in _calls(TIMESCALE_SQL)
        if c.function == "create_hypertable"
    }
    assert hypertables == {
        "events": ["'occurred_at'", "INTERVAL '1 day'"],
        "kpi_points": ["'window_start'", "INTERVAL '7 days'"],
        "dead_letters": ["'received_at'", "INTERVAL '7 days'"],
    }
    for match in re.finditer(r"ALTER TABLE (\w+) SET \((.*?)\);", TIMESCALE_SQL, re.DOTALL):
        table = match.group(1)
        for option in _split_arguments(match.group(2)):
            key, _eq, value = option.partition("=")
            key = key.strip()
            assert key.startswith("timescaledb.") and key[12:] in COMPRESSION_OPTIONS, key
            if key[12:] in ("compress_segmentby", "compress_orderby"):
                for column in value.strip().strip("'").split(","):
                    assert column.split()[0] in tables[table], (table, column)
    for match in re.finditer(r"WITH \((timescaledb\.continuous.*?)\) AS", TIMESCALE_SQL):
        for option in _split_arguments(match.group(1)):
            assert option.split("=")[0].strip()[12:] in CAGG_OPTIONS, option
    # Every continuous aggregate is made WITH NO DATA (it may run inside the migration's
    # transaction): 0003 made the two, 0007 dropped and made them again.
    assert TIMESCALE_SQL.count("WITH NO DATA") == TIMESCALE_SQL.count("timescaledb.continuous")


def test_jobs_apply_to_the_right_relations_and_are_replaced_not_stacked() -> None:
    """Retention on the three hypertables with the configured days, compression only where it
    is enabled, refresh windows at least two buckets wide and within the KPI points' retention,
    each add preceded by its remove."""
    policy = StoragePolicy(retention_days={"events": 30, "kpi_points": 400, "dead_letters": 14})
    jobs = timescale_jobs(policy)
    calls = [c for job in jobs for c in _calls(job.add)]
    retention = {
        c.positional[0].strip("'"): c.named["drop_after"]
        for c in calls
        if c.function == "add_retention_policy"
    }
    assert retention == {
        "events": "INTERVAL '30 days'",
        "kpi_points": "INTERVAL '400 days'",
        "dead_letters": "INTERVAL '14 days'",
    }
    compressed = set(
        re.findall(r"ALTER TABLE (\w+) SET \(\s*timescaledb\.compress,", TIMESCALE_SQL)
    )
    assert {
        c.positional[0].strip("'") for c in calls if c.function == "add_compression_policy"
    } == compressed
    assert rollup_start_days(policy) == 399  # within the 400 days of retention
    widths = {"kpi_rollup_1h": 3600, "kpi_rollup_1d": 86_400}
    units = {"minutes": 60, "hour": 3600, "hours": 3600, "days": 86_400}
    for refresh in ROLLUP_REFRESH:
        end_n, end_unit = refresh.end_offset.split()
        window = rollup_start_days(policy) * 86_400 - int(end_n) * units[end_unit]
        assert window >= 2 * widths[refresh.view], refresh
    short = StoragePolicy(retention_days={"events": 1, "kpi_points": 1, "dead_letters": 1})
    assert rollup_start_days(short) == 3  # never narrower than two daily buckets
    for job in jobs:
        if job.proc_name == EVENT_IDS_PRUNE:
            continue
        added, removed = _calls(job.add)[0], _calls(job.remove)[0]
        assert removed.function == "remove_" + added.function.removeprefix("add_")
        assert removed.positional[0] == added.positional[0] == f"'{job.relation}'"
        assert removed.named == {"if_exists": "TRUE"}
    assert policy_statements(policy) == [s for job in jobs for s in (job.remove, job.add)]


def test_the_event_ids_job_runs_the_migrations_procedure() -> None:
    """The custom job names the procedure 0006_event_ids.sql creates, with the signature
    TimescaleDB calls jobs with, and keeps keys a day past the events' retention."""
    assert re.search(
        rf"CREATE PROCEDURE {EVENT_IDS_PRUNE}\(job_id integer, config jsonb\)", TIMESCALE_SQL
    )
    policy = StoragePolicy(retention_days={"events": 30, "kpi_points": 400, "dead_letters": 14})
    [job] = [j for j in timescale_jobs(policy) if j.proc_name == EVENT_IDS_PRUNE]
    assert job.relation is None
    assert job.settings == {"drop_after": "31 days", "schedule_interval": "1 hour"}
    assert job.add == (
        f"SELECT add_job('{EVENT_IDS_PRUNE}', INTERVAL '1 hour',"
        ' config => \'{"drop_after": "31 days"}\'::jsonb)'
    )
    assert job.remove.endswith(f"WHERE proc_name = '{EVENT_IDS_PRUNE}'")
