-- The rest of the engine on SQLite: the rules' inputs and flags
-- (PostgreSQL 0002, 0005), alerting with its outbox (0003) and what the API
-- manages (0006). Same tables, keys and checks; jsonb and arrays are JSON
-- text, booleans are 0/1. Times written by the engine are bound from Rust
-- (RFC 3339, "+00:00"), so they compare as text; the few set here use the
-- same shape.

ALTER TABLE patients ADD COLUMN pathway TEXT NOT NULL DEFAULT 'general';
ALTER TABLE patients ADD COLUMN spo2_scale INTEGER NOT NULL DEFAULT 1 CHECK (spo2_scale IN (1, 2));
ALTER TABLE patients ADD COLUMN care_plan_oxygen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE patients ADD COLUMN date_of_birth TEXT;
ALTER TABLE patients ADD COLUMN pregnant INTEGER NOT NULL DEFAULT 0;
ALTER TABLE patients ADD COLUMN discharged_at TEXT;
ALTER TABLE patients ADD COLUMN settings_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE patients ADD COLUMN settings_changed_at TEXT NOT NULL DEFAULT '1970-01-01T00:00:00+00:00';
ALTER TABLE patients ADD COLUMN nhs_number TEXT CHECK (nhs_number IS NULL OR (length(nhs_number) = 10 AND nhs_number NOT GLOB '*[^0-9]*'));
CREATE UNIQUE INDEX patients_nhs_number ON patients (nhs_number) WHERE nhs_number IS NOT NULL;
CREATE INDEX patients_settings_version ON patients (settings_version);
CREATE INDEX patients_settings_changed_at ON patients (settings_changed_at);

-- Every write of a patient takes the next settings version (one writer, so
-- max + 1 is a sequence) and the time of the change, as PostgreSQL's
-- trigger does. The inner UPDATE does not fire these again (SQLite's
-- recursive triggers are off).
CREATE TRIGGER patients_settings_version_insert AFTER INSERT ON patients
BEGIN
    UPDATE patients
       SET settings_version = (SELECT COALESCE(max(settings_version), 0) + 1 FROM patients),
           settings_changed_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')
     WHERE id = NEW.id;
END;
CREATE TRIGGER patients_settings_version_update AFTER UPDATE ON patients
BEGIN
    UPDATE patients
       SET settings_version = (SELECT COALESCE(max(settings_version), 0) + 1 FROM patients),
           settings_changed_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')
     WHERE id = NEW.id;
END;

CREATE TABLE patient_limits (
    patient_id        TEXT NOT NULL REFERENCES patients (id),
    vital             TEXT NOT NULL,
    low               REAL,
    high              REAL,
    severity          TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'emergency')),
    persist_readings  INTEGER NOT NULL CHECK (persist_readings >= 1),
    persist_secs      INTEGER NOT NULL CHECK (persist_secs >= 0),
    clear_margin      REAL NOT NULL CHECK (clear_margin >= 0),
    clear_hold_secs   INTEGER NOT NULL CHECK (clear_hold_secs >= 0),
    set_by            TEXT NOT NULL,
    reason            TEXT NOT NULL,
    set_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (patient_id, vital),
    CHECK (low IS NOT NULL OR high IS NOT NULL),
    CHECK (low IS NULL OR high IS NULL OR low < high)
);
-- A changed limit is a changed setting of the patient: touching the row fires
-- its version trigger. (Setting the version to 0 first, as PostgreSQL does,
-- would hand the newest patient back its own version from max + 1.)
CREATE TRIGGER patient_limits_insert AFTER INSERT ON patient_limits
BEGIN UPDATE patients SET settings_version = settings_version WHERE id = NEW.patient_id; END;
CREATE TRIGGER patient_limits_update AFTER UPDATE ON patient_limits
BEGIN UPDATE patients SET settings_version = settings_version WHERE id = NEW.patient_id; END;
CREATE TRIGGER patient_limits_delete AFTER DELETE ON patient_limits
BEGIN UPDATE patients SET settings_version = settings_version WHERE id = OLD.patient_id; END;

CREATE TABLE patient_settings_audit (
    id          INTEGER PRIMARY KEY,
    patient_id  TEXT NOT NULL REFERENCES patients (id),
    at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    actor       TEXT NOT NULL CHECK (actor <> ''),
    field       TEXT NOT NULL,
    old_value   TEXT,
    new_value   TEXT,
    reason      TEXT NOT NULL CHECK (reason <> '')
);
CREATE INDEX patient_settings_audit_patient ON patient_settings_audit (patient_id, at);
CREATE TRIGGER patient_settings_audit_no_update BEFORE UPDATE ON patient_settings_audit
BEGIN SELECT RAISE(ABORT, 'patient_settings_audit is append-only'); END;
CREATE TRIGGER patient_settings_audit_no_delete BEFORE DELETE ON patient_settings_audit
BEGIN SELECT RAISE(ABORT, 'patient_settings_audit is append-only'); END;

CREATE TABLE flags (
    id          INTEGER PRIMARY KEY,
    patient_id  TEXT NOT NULL REFERENCES patients (id),
    rule        TEXT NOT NULL,
    technical   INTEGER NOT NULL,
    severity    TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'emergency')),
    raised_at   TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    cleared_at  TEXT,
    summary     TEXT NOT NULL,
    evidence    TEXT NOT NULL
);
CREATE UNIQUE INDEX flags_one_open ON flags (patient_id, rule) WHERE cleared_at IS NULL;
CREATE INDEX flags_patient ON flags (patient_id, raised_at);

CREATE TABLE alerts (
    id                 INTEGER PRIMARY KEY,
    patient_id         TEXT NOT NULL REFERENCES patients (id),
    team_id            TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('clinical', 'technical', 'delivery')),
    severity           TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'emergency')),
    state              TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    opened_at          TEXT NOT NULL,
    acknowledged_at    TEXT,
    acknowledged_by    TEXT,
    resolved_at        TEXT,
    resolved_by        TEXT,
    outcome            TEXT CHECK (outcome IN ('reviewed_no_action', 'advice_given', 'visit_arranged',
                                               'escalated_emergency', 'device_or_data_issue', 'other')),
    note               TEXT,
    policy             TEXT NOT NULL,
    tier               INTEGER NOT NULL,
    round              INTEGER NOT NULL DEFAULT 0,
    next_escalation_at TEXT,
    summary            TEXT NOT NULL
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (patient_id, kind) WHERE state <> 'resolved';
CREATE INDEX alerts_due ON alerts (next_escalation_at) WHERE state = 'open';
CREATE INDEX alerts_team ON alerts (team_id, state, opened_at);
CREATE INDEX alerts_acknowledged ON alerts (acknowledged_at) WHERE acknowledged_at IS NOT NULL;

CREATE TABLE flag_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    flag_id      INTEGER NOT NULL REFERENCES flags (id),
    patient_id   TEXT NOT NULL,
    rule         TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('raised', 'updated', 'cleared')),
    severity     TEXT NOT NULL,
    at           TEXT NOT NULL,
    summary      TEXT NOT NULL,
    evidence     TEXT NOT NULL,
    recorded_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    alerted_at   TEXT,
    alert_id     INTEGER REFERENCES alerts (id),
    alert_note   TEXT
);
CREATE INDEX flag_events_flag ON flag_events (flag_id);
CREATE INDEX flag_events_pending ON flag_events (id) WHERE alerted_at IS NULL;

CREATE TABLE alert_flags (
    alert_id   INTEGER NOT NULL REFERENCES alerts (id),
    flag_id    INTEGER NOT NULL REFERENCES flags (id),
    joined_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (alert_id, flag_id)
);

-- Ids only grow (AUTOINCREMENT): the live feed reads "after id".
CREATE TABLE alert_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id  INTEGER NOT NULL REFERENCES alerts (id),
    at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    actor     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);
CREATE TRIGGER alert_events_no_update BEFORE UPDATE ON alert_events
BEGIN SELECT RAISE(ABORT, 'alert_events is append-only'); END;
CREATE TRIGGER alert_events_no_delete BEFORE DELETE ON alert_events
BEGIN SELECT RAISE(ABORT, 'alert_events is append-only'); END;

CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY,
    alert_id         INTEGER NOT NULL REFERENCES alerts (id),
    purpose          TEXT NOT NULL CHECK (purpose IN ('page', 'update', 'undeliverable')),
    tier             INTEGER NOT NULL,
    round            INTEGER NOT NULL,
    channel          TEXT NOT NULL,
    target           TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    lease_until      TEXT,
    last_error       TEXT,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    sent_at          TEXT
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_alert ON deliveries (alert_id);

CREATE TABLE snoozes (
    id          INTEGER PRIMARY KEY,
    patient_id  TEXT NOT NULL REFERENCES patients (id),
    rule        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    until       TEXT NOT NULL,
    by_user     TEXT NOT NULL CHECK (by_user <> ''),
    reason      TEXT NOT NULL CHECK (reason <> ''),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    ended_at    TEXT
);
CREATE INDEX snoozes_ending ON snoozes (until) WHERE ended_at IS NULL;
CREATE INDEX snoozes_active ON snoozes (patient_id, rule, until);

ALTER TABLE devices ADD COLUMN model TEXT;
ALTER TABLE devices ADD COLUMN kind TEXT CHECK (kind IN ('pulse_oximeter', 'blood_pressure_monitor',
    'thermometer', 'patch', 'weighing_scale', 'glucometer', 'other'));
ALTER TABLE devices ADD COLUMN retired_at TEXT;

CREATE TABLE manual_entries (
    id           INTEGER PRIMARY KEY,
    patient_id   TEXT NOT NULL REFERENCES patients (id),
    taken_at     TEXT NOT NULL,
    -- JSON array of vital names.
    vitals       TEXT NOT NULL,
    recorded_by  TEXT NOT NULL CHECK (recorded_by <> ''),
    recorded_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    note         TEXT
);
CREATE INDEX manual_entries_patient ON manual_entries (patient_id, taken_at);

CREATE TABLE reading_notes (
    id          INTEGER PRIMARY KEY,
    patient_id  TEXT NOT NULL REFERENCES patients (id),
    vital       TEXT NOT NULL,
    time        TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    author      TEXT NOT NULL CHECK (author <> ''),
    text        TEXT NOT NULL CHECK (length(text) BETWEEN 1 AND 2000),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);
CREATE INDEX reading_notes_patient ON reading_notes (patient_id, time);

-- The start-up replay and the board read readings by time.
CREATE INDEX readings_time ON readings (time);
CREATE INDEX readings_patient_time ON readings (patient_id, time);
