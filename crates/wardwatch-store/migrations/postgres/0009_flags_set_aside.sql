-- A flag change the database refused (a constraint, a bug) is set aside
-- here with the reason, as ingest quarantines a refused reading: one bad
-- flag must never hold every other flag, and behind them every
-- acknowledgement to the broker. No foreign keys: a missing patient may be
-- the very reason.
CREATE TABLE flags_set_aside (
    id          bigserial PRIMARY KEY,
    set_aside_at timestamptz NOT NULL,
    patient_id  text NOT NULL,
    rule        text NOT NULL,
    technical   boolean NOT NULL,
    severity    text NOT NULL,
    change      text NOT NULL,
    at          timestamptz NOT NULL,
    summary     text NOT NULL,
    evidence    jsonb NOT NULL,
    reason      text NOT NULL
);
CREATE INDEX flags_set_aside_at ON flags_set_aside (set_aside_at DESC);
