-- Clinical safety on real home kits (issue 12).

-- Per rule, the measure the team was last told about (NEWS2 total, distance
-- past a limit, kg gained): worse by the policy's margin re-pages the alert.
ALTER TABLE alerts ADD COLUMN paged jsonb NOT NULL DEFAULT '{}';

-- The flag's measure when snoozed: worse by the policy's margin breaks
-- through the snooze.
ALTER TABLE snoozes ADD COLUMN measure double precision;

-- Reminders of acknowledged alerts nobody resolved.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_purpose_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_purpose_check
    CHECK (purpose IN ('page', 'update', 'undeliverable', 'reminder'));

-- Acknowledged alerts waiting for their reminder, found by the escalation pass.
CREATE INDEX alerts_acknowledged_due ON alerts (next_escalation_at) WHERE state = 'acknowledged';

-- A device lent or returned changes which devices' silence the rules watch:
-- it bumps the patient's settings version like any other setting.
CREATE FUNCTION touch_patient_for_assignment() RETURNS trigger AS $$
BEGIN
    UPDATE patients SET settings_version = settings_version
     WHERE id = COALESCE(NEW.patient_id, OLD.patient_id);
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER device_assignments_touch_patient AFTER INSERT OR UPDATE OR DELETE ON device_assignments
    FOR EACH ROW EXECUTE FUNCTION touch_patient_for_assignment();
