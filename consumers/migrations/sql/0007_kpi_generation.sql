-- KPI points of a window are ordered by (generation, revision) (issue #14): `generation` is
-- the broker epoch's (its creation time in ms), so after the embedded broker lost its topics
-- the new epoch's points supersede the earlier epoch's whatever their revision counters say.
-- Rows written before have generation 0: any later epoch's point supersedes them.
ALTER TABLE kpi_points ADD COLUMN generation bigint NOT NULL DEFAULT 0;

-- ioc:storage timescaledb
-- The continuous aggregates again, with averages and sums in numeric (issue #13): float8
-- avg()/sum() raise "value out of range: overflow" on finite points near 1.8e308, and one
-- such bucket would fail every refresh. As the plain path's rollups: through text, which
-- keeps every digit a double needs; an average of finite values is finite, a sum beyond
-- float8 is NULL. Their refresh jobs go with them; the writer's policy check adds them again.
DROP MATERIALIZED VIEW kpi_rollup_1d;
DROP MATERIALIZED VIEW kpi_rollup_1h;

CREATE MATERIALIZED VIEW kpi_rollup_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT series, kpi, sector, grp,
       time_bucket(INTERVAL '1 hour', window_start) AS bucket,
       count(*) AS points,
       GREATEST(LEAST(avg(value::text::numeric), 1.7976931348623157e308),
                -1.7976931348623157e308)::float8 AS value_avg,
       min(value) AS value_min,
       max(value) AS value_max,
       CASE WHEN abs(sum(value::text::numeric)) <= 1.7976931348623157e308
            THEN sum(value::text::numeric)::float8 END AS value_sum,
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
       GREATEST(LEAST(avg(value::text::numeric), 1.7976931348623157e308),
                -1.7976931348623157e308)::float8 AS value_avg,
       min(value) AS value_min,
       max(value) AS value_max,
       CASE WHEN abs(sum(value::text::numeric)) <= 1.7976931348623157e308
            THEN sum(value::text::numeric)::float8 END AS value_sum,
       last(value, window_start) AS value_last,
       sum(sample_count)::bigint AS samples
FROM kpi_points
GROUP BY series, kpi, sector, grp,
         time_bucket(INTERVAL '1 day', window_start, timezone => 'Asia/Ho_Chi_Minh')
WITH NO DATA;
