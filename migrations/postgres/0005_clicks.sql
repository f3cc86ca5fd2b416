-- Tracked links (src/store/clicks.rs): what each tracked message was sent with, the clicks on
-- it (pending until judged), which links a person clicked, and counts per flow and link.
CREATE TABLE hookflow_messages (
    key     TEXT COLLATE "C" PRIMARY KEY,
    sent_at BIGINT NOT NULL,
    record  TEXT NOT NULL
);
CREATE INDEX hookflow_messages_sent ON hookflow_messages (sent_at);

CREATE TABLE hookflow_clicks (
    id      TEXT COLLATE "C" PRIMARY KEY,
    message TEXT COLLATE "C" NOT NULL,
    run_id  TEXT COLLATE "C" NOT NULL,
    at      BIGINT NOT NULL,
    pending BOOLEAN NOT NULL,
    record  TEXT NOT NULL
);
CREATE INDEX hookflow_clicks_message ON hookflow_clicks (message, at);
CREATE INDEX hookflow_clicks_run ON hookflow_clicks (run_id, id);
CREATE INDEX hookflow_clicks_pending ON hookflow_clicks (at) WHERE pending;

CREATE TABLE hookflow_first_clicks (
    message TEXT COLLATE "C" NOT NULL,
    link    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (message, link)
);

CREATE TABLE hookflow_link_counts (
    flow   TEXT COLLATE "C" NOT NULL,
    link   TEXT COLLATE "C" NOT NULL,
    clicks BIGINT NOT NULL DEFAULT 0,
    first_clicks BIGINT NOT NULL DEFAULT 0,
    scanner_clicks BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (flow, link)
);
