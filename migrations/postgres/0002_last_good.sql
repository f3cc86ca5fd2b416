-- The version of each flow that last loaded from its file without a problem: what an instance
-- serves while that file is broken at its start (docs/flows.md, "When a flow file is broken").
CREATE TABLE hookflow_flow_last_good (
    flow    TEXT COLLATE "C" PRIMARY KEY,
    version TEXT COLLATE "C" NOT NULL,
    at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
