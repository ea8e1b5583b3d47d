-- Stream-worker state, one row per consumed partition: the state and the offset it
-- covers are written together, so a restarted worker resumes exactly where the state
-- stands (it seeks there) and never counts an event twice.
CREATE TABLE worker_checkpoints (
    consumer    text        NOT NULL,  -- which stage: 'events' or 'partials'
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    state       jsonb       NOT NULL,
    taken_at    timestamptz NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
);
