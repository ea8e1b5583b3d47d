-- One stored copy per event id, whatever the storage path (issue #16).
--
-- The unique key of `events` had to hold occurred_at (partitioned tables and hypertables want
-- the time column in every unique key), so a source re-sending an event_id with a corrected
-- occurred_at got a second row, and the drill-down showed the event twice. `event_ids` is the
-- key without time, in a table of its own: the writer upserts it first, writes to `events` only
-- the copy it keeps and deletes the copy that copy replaces. Repeats are refused by
-- `event_ids` (also when they belong in a compressed chunk), so `events` needs no unique key.
--
-- The copy kept for (source, event_id) is the latest published one: by the Kafka record's
-- timestamp, then partition, offset and place in a batch. A repeat with the occurred_at
-- already stored changes nothing: the first copy stays, as before.

-- ioc:storage all
CREATE TABLE event_ids (
    source       text        NOT NULL,
    event_id     text        NOT NULL,
    occurred_at  timestamptz NOT NULL,  -- of the copy in `events`
    published_at timestamptz NOT NULL,  -- of the latest copy seen: later ones may replace it
    partition    integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    idx          integer     NULL,
    replaced     timestamptz NULL,      -- occurred_at of the copy the last correction replaced
    PRIMARY KEY (source, event_id)
);
-- Rows past the events' retention are deleted (plain path: the writer's maintenance loop;
-- TimescaleDB path: a job); rows arrive in time order, so a BRIN index finds them cheaply.
CREATE INDEX event_ids_time_brin ON event_ids USING brin (occurred_at);

-- Events stored before: the latest published copy of each id is kept, earlier ones removed.
INSERT INTO event_ids (source, event_id, occurred_at, published_at, partition, "offset", idx)
SELECT DISTINCT ON (source, event_id)
       source, event_id, occurred_at, published_at, partition, "offset", idx
FROM events
ORDER BY source, event_id, published_at DESC, partition DESC, "offset" DESC, idx DESC NULLS LAST;
DELETE FROM events e USING event_ids k
WHERE e.source = k.source AND e.event_id = k.event_id AND e.occurred_at <> k.occurred_at;
ALTER TABLE events DROP CONSTRAINT events_key;

-- ioc:storage timescaledb
-- The job that deletes event_ids rows past retention; consumers/storage/timescale.py schedules
-- it with the events' retention, like the other jobs.
CREATE PROCEDURE ioc_prune_event_ids(job_id integer, config jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM event_ids WHERE occurred_at < now() - (config ->> 'drop_after')::interval;
END
$$;
-- A late copy of a dead letter into a compressed chunk is checked against its unique key
-- (dl_partition, dl_offset, received_at): with those columns in the order, compressed batches
-- carry their min/max and only the batch that may hold it is decompressed.
ALTER TABLE dead_letters SET (
    timescaledb.compress_orderby = 'received_at DESC, dl_partition, dl_offset'
);
