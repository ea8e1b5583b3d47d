-- The notifier's outbox and delivery log: one row per (alert transition, recipient, channel).
-- The notifier inserts the rows of a batch of ioc.alerts records *before* committing its
-- Kafka offsets, then sends them (grouped per recipient and channel into digests) and
-- records each attempt here. The unique key makes a re-read transition harmless, and a row
-- marked 'sent' is never sent again.
CREATE TABLE notification_deliveries (
    id               bigserial   PRIMARY KEY,
    idempotency_key  text        NOT NULL,  -- the transition's fingerprint#seq
    recipient        text        NOT NULL,  -- a recipient id of the routing file
    channel          text        NOT NULL CHECK (channel IN ('webhook', 'email', 'telegram', 'zalo')),
    address          text        NOT NULL,  -- e-mail address, chat id, Zalo user id, webhook path
    fingerprint      text        NOT NULL,
    seq              integer     NOT NULL,
    transition       text        NOT NULL,
    severity         text        NOT NULL,
    sector           text        NOT NULL,
    escalation_level integer     NOT NULL,
    status           text        NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'held')),
    hold_reason      text        NULL,      -- flapping, silenced:<id>, rate_limited, channel_not_configured
    attempts         integer     NOT NULL DEFAULT 0,
    last_error       text        NULL,
    digest_id        text        NULL,      -- the message that carried it (several rows per digest)
    payload          jsonb       NOT NULL,  -- the transition record, to render it after a restart
    created_at       timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,  -- created_at + group_wait, then the next retry
    first_attempt_at timestamptz NULL,
    last_attempt_at  timestamptz NULL,
    sent_at          timestamptz NULL,
    UNIQUE (idempotency_key, recipient, channel)
);

CREATE INDEX notification_deliveries_pending_idx
    ON notification_deliveries (recipient, channel, due_at) WHERE status = 'pending';
CREATE INDEX notification_deliveries_fingerprint_idx ON notification_deliveries (fingerprint);
CREATE INDEX notification_deliveries_sent_idx
    ON notification_deliveries (sent_at) WHERE status = 'sent';
