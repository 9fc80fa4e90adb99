-- wardwatch's embedded store (SQLite): the ingest schema, the same tables
-- and keys as PostgreSQL's 0001_ingest.sql. Times are ISO 8601 text in UTC
-- as sqlx writes them, so equal instants are equal strings and order sorts.

CREATE TABLE patients (
    id          TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE devices (
    id          TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- A device is lent to one patient at a time: [valid_from, valid_to).
CREATE TABLE device_assignments (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices (id),
    patient_id  TEXT NOT NULL REFERENCES patients (id),
    valid_from  TEXT NOT NULL,
    valid_to    TEXT,
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX device_assignments_lookup ON device_assignments (device_id, valid_from);
CREATE UNIQUE INDEX device_assignments_one_open ON device_assignments (device_id) WHERE valid_to IS NULL;

CREATE TABLE readings (
    time         TEXT NOT NULL,
    patient_id   TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    vital        TEXT NOT NULL,
    value        REAL NOT NULL,
    received_at  TEXT NOT NULL,
    source       TEXT NOT NULL,
    -- Redelivery must not duplicate.
    CONSTRAINT readings_unique UNIQUE (patient_id, vital, time, device_id)
);

CREATE TABLE device_names (
    device_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    first_seen   TEXT NOT NULL,
    last_seen    TEXT NOT NULL,
    PRIMARY KEY (device_id, name)
);

CREATE TABLE quarantine (
    id            INTEGER PRIMARY KEY,
    received_at   TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    times_seen    INTEGER NOT NULL DEFAULT 1,
    topic         TEXT NOT NULL,
    device_id     TEXT,
    reason        TEXT NOT NULL,
    detail        TEXT NOT NULL,
    record        TEXT NOT NULL,
    message_key   BLOB NOT NULL,
    part          INTEGER NOT NULL,
    item          INTEGER NOT NULL,
    CONSTRAINT quarantine_unique UNIQUE (message_key, part, item)
);
CREATE INDEX quarantine_received ON quarantine (received_at);

CREATE TABLE relative_time_anchors (
    message_key  BLOB PRIMARY KEY,
    anchor       TEXT NOT NULL
);
CREATE INDEX relative_time_anchors_age ON relative_time_anchors (anchor);
