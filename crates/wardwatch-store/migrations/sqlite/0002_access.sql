-- Users, their teams, API tokens (hashes only) and the append-only audit
-- log: the same tables as PostgreSQL's 0004_api.sql.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'clinician', 'nurse', 'patient', 'proxy')),
    patient_id  TEXT REFERENCES patients (id),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    disabled_at TEXT,
    CHECK ((role IN ('patient', 'proxy')) = (patient_id IS NOT NULL))
);

CREATE TABLE user_teams (
    user_id  TEXT NOT NULL REFERENCES users (id),
    team_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, team_id)
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    token_hash   BLOB NOT NULL UNIQUE,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    expires_at   TEXT NOT NULL,
    revoked_at   TEXT,
    last_used_at TEXT
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    user_id     TEXT,
    action      TEXT NOT NULL,
    resource    TEXT NOT NULL,
    patient_id  TEXT,
    status      INTEGER NOT NULL,
    client      TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, at);
-- Append-only, as on PostgreSQL by convention: here the database refuses.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
