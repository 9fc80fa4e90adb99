-- Mirrors PostgreSQL's 0009: flag changes the database refused, with why.
CREATE TABLE flags_set_aside (
    id           INTEGER PRIMARY KEY,
    set_aside_at TEXT NOT NULL,
    patient_id   TEXT NOT NULL,
    rule         TEXT NOT NULL,
    technical    INTEGER NOT NULL,
    severity     TEXT NOT NULL,
    change       TEXT NOT NULL,
    at           TEXT NOT NULL,
    summary      TEXT NOT NULL,
    evidence     TEXT NOT NULL,
    reason       TEXT NOT NULL
);
CREATE INDEX flags_set_aside_at ON flags_set_aside (set_aside_at DESC);
