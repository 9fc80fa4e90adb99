-- Settings versions come from a sequence when a row is written, but
-- transactions commit in any order: a reader that keeps only the highest
-- version seen could miss a change committed late with a lower one. The
-- time of the change lets the engine re-read a short overlap as well.
ALTER TABLE patients ADD COLUMN settings_changed_at timestamptz NOT NULL DEFAULT now();

CREATE OR REPLACE FUNCTION bump_patient_settings_version() RETURNS trigger AS $$
BEGIN
    NEW.settings_version := nextval('patient_settings_version');
    NEW.settings_changed_at := clock_timestamp();
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE INDEX patients_settings_changed_at ON patients (settings_changed_at);
