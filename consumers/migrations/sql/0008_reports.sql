-- The analysis teams' reports (`ioc reporter`): each edition made once per team and period,
-- and each sent once per recipient and channel. A reporter restarted after 07:00 finds the
-- report made and its deliveries recorded, and sends only what is still pending.
CREATE TABLE team_reports (
    team         text        NOT NULL,
    edition      text        NOT NULL CHECK (edition IN ('daily', 'weekly')),
    first_day    date        NOT NULL,  -- the day (daily) or the Monday (weekly), province time
    last_day     date        NOT NULL,
    generated_at timestamptz NOT NULL,
    subject      text        NOT NULL,  -- the notification's subject and summary lines
    summary      text        NOT NULL,
    html         text        NOT NULL,  -- <!--ioc:link--> marks where each reader's link goes
    pdf          bytea       NOT NULL,
    xlsx         bytea       NOT NULL,
    PRIMARY KEY (team, edition, first_day)
);

CREATE TABLE report_deliveries (
    team        text        NOT NULL,
    edition     text        NOT NULL,
    first_day   date        NOT NULL,
    recipient   text        NOT NULL,  -- a recipient id of the routing file
    channel     text        NOT NULL CHECK (channel IN ('webhook', 'email', 'telegram', 'zalo')),
    address     text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text        NULL,
    created_at  timestamptz NOT NULL,
    due_at      timestamptz NOT NULL,
    sent_at     timestamptz NULL,
    PRIMARY KEY (team, edition, first_day, recipient, channel),
    FOREIGN KEY (team, edition, first_day) REFERENCES team_reports ON DELETE CASCADE
);

CREATE INDEX report_deliveries_pending_idx ON report_deliveries (due_at) WHERE status = 'pending';
