-- hookflow's tables on PostgreSQL. Keys compare byte by byte (COLLATE "C"), as in the embedded
-- store, whatever the database's collation.
-- Times are milliseconds since the Unix epoch (BIGINT);
-- records are the same JSON the embedded store keeps (TEXT: never queried inside).

-- Runs and their queue state. A run is unfinished while `finished_at` is NULL; `due` is when it
-- may be claimed (NULL: finished, or behind an earlier run of its ordering lane). A claim sets
-- a lease (token and expiry) and moves `due` to the expiry, so a dead worker's run falls due.
CREATE TABLE hookflow_runs (
    id          TEXT COLLATE "C" PRIMARY KEY,
    flow        TEXT COLLATE "C" NOT NULL,
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    finished_at BIGINT,
    record      TEXT NOT NULL,
    due         BIGINT,
    lease_token BIGINT,
    lease_until BIGINT,
    lane        TEXT COLLATE "C",
    lane_seq    BIGINT,
    exit_req    TEXT
);
CREATE INDEX hookflow_runs_due ON hookflow_runs (due) WHERE due IS NOT NULL;
CREATE INDEX hookflow_runs_lane ON hookflow_runs (lane, lane_seq) WHERE lane IS NOT NULL;
CREATE INDEX hookflow_runs_flow ON hookflow_runs (flow, id);
CREATE INDEX hookflow_runs_status ON hookflow_runs (status, id);
CREATE INDEX hookflow_runs_leased ON hookflow_runs (flow, lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX hookflow_runs_finished ON hookflow_runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE SEQUENCE hookflow_lane_seq;

-- Where an exit finds the runs it ends (see src/sequence.rs), and how many runs wait per flow.
CREATE TABLE hookflow_exit_index (
    flow   TEXT COLLATE "C" NOT NULL,
    key    TEXT COLLATE "C" NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (flow, key, run_id)
);
CREATE TABLE hookflow_waiting (
    flow TEXT COLLATE "C" PRIMARY KEY,
    n    BIGINT NOT NULL
);

-- Deliveries seen, per flow: the first run's id until the window ends.
CREATE TABLE hookflow_dedupe (
    flow    TEXT COLLATE "C" NOT NULL,
    key     TEXT COLLATE "C" NOT NULL,
    run_id  TEXT COLLATE "C" NOT NULL,
    expires BIGINT NOT NULL,
    PRIMARY KEY (flow, key)
);
CREATE INDEX hookflow_dedupe_expires ON hookflow_dedupe (expires);

-- The event outbox: raised in the same transaction as what raised it, removed by the
-- transaction that turns it into runs.
CREATE TABLE hookflow_events (
    seq  BIGSERIAL PRIMARY KEY,
    id   TEXT COLLATE "C" NOT NULL UNIQUE,
    body TEXT NOT NULL
);

-- Contacts and segment membership.
CREATE TABLE hookflow_contacts (
    email  TEXT COLLATE "C" PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE hookflow_members (
    segment   TEXT COLLATE "C" NOT NULL,
    email     TEXT COLLATE "C" NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (segment, email)
);
CREATE INDEX hookflow_members_email ON hookflow_members (email);
CREATE INDEX hookflow_members_joined ON hookflow_members (segment, joined_at);

-- Per-flow state: the last cron firing, flow file texts by version, counters.
CREATE TABLE hookflow_firings (
    flow TEXT COLLATE "C" PRIMARY KEY,
    at   BIGINT NOT NULL
);
CREATE TABLE hookflow_flow_sources (
    flow    TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    source  TEXT NOT NULL,
    PRIMARY KEY (flow, version)
);
CREATE TABLE hookflow_counters (
    flow TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    n    BIGINT NOT NULL,
    PRIMARY KEY (flow, name)
);

-- Rate limits kept by all instances together: when each action's next attempt may start.
CREATE TABLE hookflow_rate_slots (
    key     TEXT COLLATE "C" PRIMARY KEY,
    next_at BIGINT NOT NULL
);

-- The instances sharing this database: each writes its row every few seconds.
CREATE TABLE hookflow_instances (
    id         TEXT COLLATE "C" PRIMARY KEY,
    info       TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL
);

-- Settings every instance must share (the webhook URL secret when none is given).
CREATE TABLE hookflow_meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
