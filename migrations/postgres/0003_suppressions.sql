-- The suppression list (src/suppression.rs): addresses not to email, per list or for every
-- email (scope '*'). Lifted entries stay, with active = false, as history.
CREATE TABLE hookflow_suppressions (
    email  TEXT COLLATE "C" NOT NULL,
    scope  TEXT COLLATE "C" NOT NULL,
    active BOOLEAN NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (email, scope)
);
