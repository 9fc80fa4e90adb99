-- wardwatch ingest schema: patients, the device catalogue and its assignments,
-- readings (analysts query this table directly: keep its name and columns),
-- and the quarantine of everything refused.

CREATE TABLE patients (
    id          text PRIMARY KEY,
    team_id     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    id          text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A device is lent to one patient at a time; readings are attributed to the
-- patient the device was assigned to at the reading's time: [valid_from, valid_to).
CREATE TABLE device_assignments (
    id          bigserial PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices (id),
    patient_id  text NOT NULL REFERENCES patients (id),
    valid_from  timestamptz NOT NULL,
    valid_to    timestamptz,
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX device_assignments_lookup ON device_assignments (device_id, valid_from DESC);
CREATE UNIQUE INDEX device_assignments_one_open ON device_assignments (device_id) WHERE valid_to IS NULL;

CREATE TABLE readings (
    time         timestamptz NOT NULL,
    patient_id   text NOT NULL,
    device_id    text NOT NULL,
    vital        text NOT NULL,
    value        double precision NOT NULL,
    received_at  timestamptz NOT NULL,
    source       text NOT NULL,
    -- Redelivery must not duplicate. TimescaleDB needs the time column in every unique key.
    CONSTRAINT readings_unique UNIQUE (patient_id, vital, time, device_id)
);
COMMENT ON TABLE readings IS 'One validated measurement in canonical units (see README, device contract).';
COMMENT ON COLUMN readings.value IS 'Canonical unit per vital; consciousness: 0=A 1=C 2=V 3=P 4=U; supplemental_oxygen: 1=on oxygen 0=air.';
-- No second index: every insert pays for each one, and the unique key already
-- serves per-patient queries (patient_id, vital, time).

-- How each device names itself in its payloads (SenML bn+n, FHIR device):
-- kept for diagnosis (a swapped or misconfigured device shows up here), once
-- per name rather than on every reading. Identity is always the topic's id.
CREATE TABLE device_names (
    device_id    text NOT NULL,
    name         text NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    PRIMARY KEY (device_id, name)
);

CREATE TABLE quarantine (
    id            bigserial PRIMARY KEY,
    received_at   timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    times_seen    integer NOT NULL DEFAULT 1,
    topic         text NOT NULL,
    device_id     text,
    reason        text NOT NULL,
    detail        text NOT NULL,
    record        text NOT NULL,
    -- Idempotency: sha-256 prefix of (topic, payload), which part of the
    -- pipeline refused it (0 decode, 1 attribution) and which record.
    message_key   bytea NOT NULL,
    part          smallint NOT NULL,
    item          integer NOT NULL,
    CONSTRAINT quarantine_unique UNIQUE (message_key, part, item)
);
CREATE INDEX quarantine_received ON quarantine (received_at DESC);
CREATE INDEX quarantine_reason ON quarantine (reason, received_at DESC);

-- SenML times near zero are relative to "now". A redelivered message must
-- resolve to the same times as its first delivery, so the first receipt time
-- of such messages is kept (briefly) and reused when the broker redelivers.
CREATE TABLE relative_time_anchors (
    message_key  bytea PRIMARY KEY,
    anchor       timestamptz NOT NULL
);
CREATE INDEX relative_time_anchors_age ON relative_time_anchors (anchor);
