-- Clinical safety on real home kits: the twin of PostgreSQL's 0007.

-- Per rule, the measure the team was last told about (JSON object).
ALTER TABLE alerts ADD COLUMN paged TEXT NOT NULL DEFAULT '{}';

-- The flag's measure when snoozed.
ALTER TABLE snoozes ADD COLUMN measure REAL;

-- Reminders of acknowledged alerts: SQLite cannot alter a CHECK, so the
-- outbox table is rebuilt with the same columns, rows and indexes.
CREATE TABLE deliveries_new (
    id               INTEGER PRIMARY KEY,
    alert_id         INTEGER NOT NULL REFERENCES alerts (id),
    purpose          TEXT NOT NULL CHECK (purpose IN ('page', 'update', 'undeliverable', 'reminder')),
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
INSERT INTO deliveries_new SELECT id, alert_id, purpose, tier, round, channel, target, idempotency_key,
    status, attempts, next_attempt_at, lease_until, last_error, created_at, sent_at FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_alert ON deliveries (alert_id);

CREATE INDEX alerts_acknowledged_due ON alerts (next_escalation_at) WHERE state = 'acknowledged';

-- A device lent or returned bumps the patient's settings version.
CREATE TRIGGER device_assignments_insert AFTER INSERT ON device_assignments
BEGIN UPDATE patients SET settings_version = settings_version WHERE id = NEW.patient_id; END;
CREATE TRIGGER device_assignments_update AFTER UPDATE ON device_assignments
BEGIN UPDATE patients SET settings_version = settings_version WHERE id = NEW.patient_id; END;
CREATE TRIGGER device_assignments_delete AFTER DELETE ON device_assignments
BEGIN UPDATE patients SET settings_version = settings_version WHERE id = OLD.patient_id; END;
