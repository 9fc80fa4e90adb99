-- What the API manages beyond alerts: patients' identity at enrolment, the
-- device catalogue, observations typed in by staff, and correction notes.

-- The NHS number (checked with its modulus-11 digit before it gets here):
-- one record per person, so a second enrolment is refused, not duplicated.
ALTER TABLE patients ADD COLUMN nhs_number text CHECK (nhs_number ~ '^[0-9]{10}$');
CREATE UNIQUE INDEX patients_nhs_number ON patients (nhs_number) WHERE nhs_number IS NOT NULL;

-- The catalogue, like a lending library. Status is derived, never stored
-- twice: retired when retired_at is set, assigned while an assignment is
-- open, available otherwise.
ALTER TABLE devices
    ADD COLUMN model      text,
    ADD COLUMN kind       text CHECK (kind IN ('pulse_oximeter', 'blood_pressure_monitor',
                                               'thermometer', 'patch', 'weighing_scale',
                                               'glucometer', 'other')),
    ADD COLUMN retired_at timestamptz;

-- Observations taken by phone or on a visit and typed in: their readings
-- are ordinary rows (source 'manual', device 'manual'); this records who
-- entered them and when.
CREATE TABLE manual_entries (
    id           bigserial PRIMARY KEY,
    patient_id   text NOT NULL REFERENCES patients (id),
    taken_at     timestamptz NOT NULL,
    vitals       text[] NOT NULL,
    recorded_by  text NOT NULL CHECK (recorded_by <> ''),
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    note         text
);
CREATE INDEX manual_entries_patient ON manual_entries (patient_id, taken_at);

-- A patient's (or their proxy's, or staff's) note on one reading, such as
-- "the cuff slipped". Readings themselves are never edited.
CREATE TABLE reading_notes (
    id          bigserial PRIMARY KEY,
    patient_id  text NOT NULL REFERENCES patients (id),
    vital       text NOT NULL,
    time        timestamptz NOT NULL,
    device_id   text NOT NULL,
    author      text NOT NULL CHECK (author <> ''),
    text        text NOT NULL CHECK (length(text) BETWEEN 1 AND 2000),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reading_notes_patient ON reading_notes (patient_id, time);
