-- Storage of the stream (`ioc writer`): raw events, KPI points and their hourly/daily
-- rollups, current alerts and the alert audit, dead letters, source freshness.
--
-- Two storage paths (chosen once per database, recorded in storage_path):
--   timescaledb       hypertables and continuous aggregates; the jobs (retention,
--                     compression, aggregate refresh) are added from the settings by
--                     consumers/storage/timescale.py after migrating.
--   plain-postgresql  native range partitions (created ahead and dropped by the writer's
--                     maintenance loop) and rollup tables the maintenance loop keeps current.
-- Both give the same table and column names, so readers never ask which path ran.
--
-- Unique keys include the time column because both partitioned tables and hypertables
-- require it: an event is (source, event_id, occurred_at) — a redelivered event carries
-- the same occurred_at, so it is stored once.

-- ioc:storage all
-- Current state of every alert: the transition with the highest seq per fingerprint.
CREATE TABLE alerts_current (
    fingerprint text        PRIMARY KEY,
    seq         bigint      NOT NULL,
    state       text        NOT NULL,
    severity    text        NOT NULL,
    sector      text        NOT NULL,
    rule        text        NOT NULL,
    started_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,  -- `at` of that transition
    record      jsonb       NOT NULL   -- AlertTransition.to_json()
);
CREATE INDEX alerts_current_open_idx ON alerts_current (sector, severity)
    WHERE state <> 'resolved';

-- Audit: every transition of every alert, once.
CREATE TABLE alert_transitions (
    fingerprint text        NOT NULL,
    seq         bigint      NOT NULL,
    at          timestamptz NOT NULL,
    transition  text        NOT NULL,
    state       text        NOT NULL,
    severity    text        NOT NULL,
    sector      text        NOT NULL,
    rule        text        NOT NULL,
    actor       text        NULL,
    record      jsonb       NOT NULL,
    PRIMARY KEY (fingerprint, seq)
);
CREATE INDEX alert_transitions_sector_at_idx ON alert_transitions (sector, at DESC);

-- Latest freshness change per source (kind "freshness" on ioc.kpi).
CREATE TABLE source_freshness (
    source      text             PRIMARY KEY,
    sector      text             NOT NULL,
    state       text             NOT NULL CHECK (state IN ('fresh', 'stale')),
    last_seen   timestamptz      NULL,
    changed_at  timestamptz      NOT NULL,
    stale_after double precision NOT NULL  -- seconds
);

-- Latest arrival per sector (kind "sector_seen" on ioc.kpi).
CREATE TABLE sector_last_seen (
    sector     text        PRIMARY KEY,
    last_seen  timestamptz NOT NULL,
    emitted_at timestamptz NOT NULL
);

-- ioc:storage plain-postgresql
-- Raw events, one partition per UTC day (events_pYYYYMMDD).
CREATE TABLE events (
    source         text             NOT NULL,
    event_id       text             NOT NULL,
    sector         text             NOT NULL,
    type           text             NOT NULL,
    occurred_at    timestamptz      NOT NULL,
    value          double precision NULL,
    unit           text             NULL,
    district       text             NULL,
    data           jsonb            NULL,
    schema_version smallint         NOT NULL DEFAULT 1,
    topic          text             NOT NULL,  -- where the event travelled: drill-down
    partition      integer          NOT NULL,
    "offset"       bigint           NOT NULL,
    idx            integer          NULL,      -- position in a batch record; NULL: one-event record
    published_at   timestamptz      NOT NULL,  -- the Kafka record's timestamp
    CONSTRAINT events_key UNIQUE (source, event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
-- The events behind a KPI point: sector, type, a window of time (then district/source).
CREATE INDEX events_sector_type_time_idx ON events (sector, type, occurred_at);
CREATE INDEX events_time_brin ON events USING brin (occurred_at);

-- KPI points: one row per (series, window_start), the highest revision seen.
-- One partition per 7 days from a Monday, UTC (kpi_points_pYYYYMMDD): two years are 105 tables.
CREATE TABLE kpi_points (
    series       text             NOT NULL,
    kpi          text             NOT NULL,
    sector       text             NOT NULL,
    grp          text             NOT NULL,
    window_start timestamptz      NOT NULL,
    window_end   timestamptz      NOT NULL,
    value        double precision NULL,
    sample_count bigint           NOT NULL,
    final        boolean          NOT NULL,
    revision     integer          NOT NULL,
    emitted_at   timestamptz      NOT NULL,
    PRIMARY KEY (series, window_start)  -- also serves: a series over a time range
) PARTITION BY RANGE (window_start);
-- Latest point per series of a sector (DISTINCT ON (series) … ORDER BY series, window_start DESC).
CREATE INDEX kpi_points_sector_idx ON kpi_points (sector, series, window_start DESC);

-- Dead letters, one partition per UTC day. The key is the dead letter's own place on
-- ioc.deadletter plus its received_at, so a redelivered dead letter is stored once.
CREATE TABLE dead_letters (
    reason       text        NOT NULL,
    detail       text        NULL,
    source       text        NULL,
    event_id     text        NULL,
    topic        text        NULL,  -- where the refused record was
    partition    integer     NULL,
    "offset"     bigint      NULL,
    idx          integer     NULL,
    received_at  timestamptz NOT NULL,
    original     bytea       NULL,
    dl_partition integer     NOT NULL,  -- where the dead letter is on ioc.deadletter
    dl_offset    bigint      NOT NULL,
    CONSTRAINT dead_letters_key UNIQUE (dl_partition, dl_offset, received_at)
) PARTITION BY RANGE (received_at);
CREATE INDEX dead_letters_source_idx ON dead_letters (source, received_at DESC);

-- Rollups of KPI points, kept current by the maintenance loop from kpi_rollup_pending.
-- Hours are UTC hours; days are days of the province (Asia/Ho_Chi_Minh, UTC+7, no DST).
CREATE TABLE kpi_rollup_1h (
    series     text             NOT NULL,
    kpi        text             NOT NULL,
    sector     text             NOT NULL,
    grp        text             NOT NULL,
    bucket     timestamptz      NOT NULL,
    points     bigint           NOT NULL,  -- KPI points (windows) in the bucket
    value_avg  double precision NULL,
    value_min  double precision NULL,
    value_max  double precision NULL,
    value_sum  double precision NULL,
    value_last double precision NULL,      -- value of the latest window_start
    samples    bigint           NOT NULL,  -- sum of sample_count
    PRIMARY KEY (series, bucket)
);
CREATE INDEX kpi_rollup_1h_sector_idx ON kpi_rollup_1h (sector, bucket);
CREATE TABLE kpi_rollup_1d (LIKE kpi_rollup_1h INCLUDING ALL);

-- Hours whose rollups are out of date: the writer adds them in the transaction that changes
-- a KPI point; the maintenance loop recomputes and removes them.
CREATE TABLE kpi_rollup_pending (
    series text        NOT NULL,
    bucket timestamptz NOT NULL,  -- the UTC hour
    PRIMARY KEY (series, bucket)
);

-- ioc:storage timescaledb
-- Same tables as hypertables (not run in CI: no TimescaleDB binary there; see README).
CREATE TABLE events (
    source         text             NOT NULL,
    event_id       text             NOT NULL,
    sector         text             NOT NULL,
    type           text             NOT NULL,
    occurred_at    timestamptz      NOT NULL,
    value          double precision NULL,
    unit           text             NULL,
    district       text             NULL,
    data           jsonb            NULL,
    schema_version smallint         NOT NULL DEFAULT 1,
    topic          text             NOT NULL,
    partition      integer          NOT NULL,
    "offset"       bigint           NOT NULL,
    idx            integer          NULL,
    published_at   timestamptz      NOT NULL,
    CONSTRAINT events_key UNIQUE (source, event_id, occurred_at)
);
SELECT create_hypertable('events', by_range('occurred_at', INTERVAL '1 day'),
                         create_default_indexes => FALSE);
CREATE INDEX events_sector_type_time_idx ON events (sector, type, occurred_at);
CREATE INDEX events_time_idx ON events (occurred_at DESC);
ALTER TABLE events SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'sector, type',
    timescaledb.compress_orderby = 'occurred_at DESC'
);

CREATE TABLE kpi_points (
    series       text             NOT NULL,
    kpi          text             NOT NULL,
    sector       text             NOT NULL,
    grp          text             NOT NULL,
    window_start timestamptz      NOT NULL,
    window_end   timestamptz      NOT NULL,
    value        double precision NULL,
    sample_count bigint           NOT NULL,
    final        boolean          NOT NULL,
    revision     integer          NOT NULL,
    emitted_at   timestamptz      NOT NULL,
    PRIMARY KEY (series, window_start)
);
SELECT create_hypertable('kpi_points', by_range('window_start', INTERVAL '7 days'),
                         create_default_indexes => FALSE);
CREATE INDEX kpi_points_sector_idx ON kpi_points (sector, series, window_start DESC);
ALTER TABLE kpi_points SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'series',
    timescaledb.compress_orderby = 'window_start DESC'
);

CREATE TABLE dead_letters (
    reason       text        NOT NULL,
    detail       text        NULL,
    source       text        NULL,
    event_id     text        NULL,
    topic        text        NULL,
    partition    integer     NULL,
    "offset"     bigint      NULL,
    idx          integer     NULL,
    received_at  timestamptz NOT NULL,
    original     bytea       NULL,
    dl_partition integer     NOT NULL,
    dl_offset    bigint      NOT NULL,
    CONSTRAINT dead_letters_key UNIQUE (dl_partition, dl_offset, received_at)
);
SELECT create_hypertable('dead_letters', by_range('received_at', INTERVAL '7 days'),
                         create_default_indexes => FALSE);
CREATE INDEX dead_letters_source_idx ON dead_letters (source, received_at DESC);
ALTER TABLE dead_letters SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'source',
    timescaledb.compress_orderby = 'received_at DESC'
);

-- Continuous aggregates with the same columns as the plain path's rollup tables. Real-time
-- (materialized_only = false): a query adds the not yet materialized recent buckets.
CREATE MATERIALIZED VIEW kpi_rollup_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT series, kpi, sector, grp,
       time_bucket(INTERVAL '1 hour', window_start) AS bucket,
       count(*) AS points,
       avg(value) AS value_avg,
       min(value) AS value_min,
       max(value) AS value_max,
       sum(value) AS value_sum,
       last(value, window_start) AS value_last,
       sum(sample_count)::bigint AS samples
FROM kpi_points
GROUP BY series, kpi, sector, grp, time_bucket(INTERVAL '1 hour', window_start)
WITH NO DATA;

CREATE MATERIALIZED VIEW kpi_rollup_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT series, kpi, sector, grp,
       time_bucket(INTERVAL '1 day', window_start, timezone => 'Asia/Ho_Chi_Minh') AS bucket,
       count(*) AS points,
       avg(value) AS value_avg,
       min(value) AS value_min,
       max(value) AS value_max,
       sum(value) AS value_sum,
       last(value, window_start) AS value_last,
       sum(sample_count)::bigint AS samples
FROM kpi_points
GROUP BY series, kpi, sector, grp,
         time_bucket(INTERVAL '1 day', window_start, timezone => 'Asia/Ho_Chi_Minh')
WITH NO DATA;
