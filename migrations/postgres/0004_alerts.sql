-- Alert states (src/store/alerts.rs): one row per alert, changed by compare-and-set on
-- `changes` in the transaction that puts the announcing event in the outbox.
CREATE TABLE hookflow_alerts (
    key     TEXT COLLATE "C" PRIMARY KEY,
    changes BIGINT NOT NULL,
    record  TEXT NOT NULL
);
