-- The rules core's inputs (a patient's pathway and clinician-set settings,
-- personalised limits, all audited) and its output (flags and their events).

ALTER TABLE patients
    ADD COLUMN pathway          text NOT NULL DEFAULT 'general',
    -- SpO2 Scale 2 only by a clinician's decision, recorded in patient_settings_audit.
    ADD COLUMN spo2_scale       smallint NOT NULL DEFAULT 1 CHECK (spo2_scale IN (1, 2)),
    -- On oxygen per the care plan: used for NEWS2 when no reading says.
    ADD COLUMN care_plan_oxygen boolean NOT NULL DEFAULT false,
    -- NEWS2 is for adults and not in pregnancy.
    ADD COLUMN date_of_birth    date,
    ADD COLUMN pregnant         boolean NOT NULL DEFAULT false,
    -- Discharged patients keep their history but are no longer monitored.
    ADD COLUMN discharged_at    timestamptz,
    -- Bumped on every change so the engine picks up exactly what changed.
    ADD COLUMN settings_version bigint NOT NULL DEFAULT 0;

CREATE SEQUENCE patient_settings_version;

CREATE FUNCTION bump_patient_settings_version() RETURNS trigger AS $$
BEGIN
    NEW.settings_version := nextval('patient_settings_version');
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER patients_settings_version BEFORE INSERT OR UPDATE ON patients
    FOR EACH ROW EXECUTE FUNCTION bump_patient_settings_version();

CREATE INDEX patients_settings_version ON patients (settings_version);

-- A clinician's personalised limit on one vital (e.g. COPD SpO2 88-92): it
-- replaces the pathway's thresholds on that vital for this patient.
CREATE TABLE patient_limits (
    patient_id        text NOT NULL REFERENCES patients (id),
    vital             text NOT NULL,
    low               double precision,
    high              double precision,
    severity          text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'emergency')),
    persist_readings  integer NOT NULL CHECK (persist_readings >= 1),
    persist_secs      integer NOT NULL CHECK (persist_secs >= 0),
    clear_margin      double precision NOT NULL CHECK (clear_margin >= 0),
    clear_hold_secs   integer NOT NULL CHECK (clear_hold_secs >= 0),
    set_by            text NOT NULL,
    reason            text NOT NULL,
    set_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, vital),
    CHECK (low IS NOT NULL OR high IS NOT NULL),
    CHECK (low IS NULL OR high IS NULL OR low < high)
);

CREATE FUNCTION patient_limits_touch_patient() RETURNS trigger AS $$
BEGIN
    UPDATE patients SET settings_version = 0
     WHERE id = COALESCE(NEW.patient_id, OLD.patient_id);
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER patient_limits_changed AFTER INSERT OR UPDATE OR DELETE ON patient_limits
    FOR EACH ROW EXECUTE FUNCTION patient_limits_touch_patient();

-- Append-only: who changed which clinical setting, from what, to what, and why.
CREATE TABLE patient_settings_audit (
    id          bigserial PRIMARY KEY,
    patient_id  text NOT NULL REFERENCES patients (id),
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL CHECK (actor <> ''),
    field       text NOT NULL,
    old_value   text,
    new_value   text,
    reason      text NOT NULL CHECK (reason <> '')
);
CREATE INDEX patient_settings_audit_patient ON patient_settings_audit (patient_id, at);

-- A flag: one open per patient and rule at a time (the unique index), so a
-- replay or a race can update it but never open a second one.
CREATE TABLE flags (
    id          bigserial PRIMARY KEY,
    patient_id  text NOT NULL REFERENCES patients (id),
    rule        text NOT NULL,
    technical   boolean NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'emergency')),
    raised_at   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    cleared_at  timestamptz,
    summary     text NOT NULL,
    -- {"readings": [...], "news2": {...}}: what the flag rests on.
    evidence    jsonb NOT NULL
);
CREATE UNIQUE INDEX flags_one_open ON flags (patient_id, rule) WHERE cleared_at IS NULL;
CREATE INDEX flags_patient ON flags (patient_id, raised_at DESC);

-- Every change of a flag, append-only: the alerting layer's input.
CREATE TABLE flag_events (
    id           bigserial PRIMARY KEY,
    flag_id      bigint NOT NULL REFERENCES flags (id),
    patient_id   text NOT NULL,
    rule         text NOT NULL,
    state        text NOT NULL CHECK (state IN ('raised', 'updated', 'cleared')),
    severity     text NOT NULL,
    at           timestamptz NOT NULL,
    summary      text NOT NULL,
    evidence     jsonb NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX flag_events_flag ON flag_events (flag_id);

-- The start-up replay reads recent readings of every patient by time. A BRIN
-- index costs almost nothing per insert on append-mostly time data and lets
-- plain PostgreSQL skip old blocks (TimescaleDB adds its own time index).
CREATE INDEX readings_time_brin ON readings USING brin (time);
