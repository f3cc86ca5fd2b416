-- A run's input (its request and the vars mapped from it: src/store/record.rs), written once
-- when the run is stored and never updated; `hookflow_runs.record` holds its progress from now
-- on, so a claim or a save rewrites a small row instead of the request with it.
CREATE TABLE hookflow_run_inputs (
    id    TEXT COLLATE "C" PRIMARY KEY,
    input TEXT NOT NULL
);

-- Unfinished runs are split here, so every later write of a run's progress has its input
-- apart. Finished runs keep their whole record (no input row) and are read as they are.
INSERT INTO hookflow_run_inputs (id, input)
SELECT id, json_build_object('request', record::json -> 'request', 'vars', record::json -> 'vars')::text
FROM hookflow_runs WHERE finished_at IS NULL;
UPDATE hookflow_runs SET record = (record::jsonb - 'request' - 'vars')::text WHERE finished_at IS NULL;
