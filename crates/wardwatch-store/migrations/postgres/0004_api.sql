-- Users, their teams, API tokens (stored only as hashes) and the audit log.

CREATE TABLE users (
    id          text PRIMARY KEY,
    role        text NOT NULL CHECK (role IN ('admin', 'clinician', 'nurse', 'patient', 'proxy')),
    -- For patients and proxies: whose record they may read.
    patient_id  text REFERENCES patients (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz,
    CHECK ((role IN ('patient', 'proxy')) = (patient_id IS NOT NULL))
);

CREATE TABLE user_teams (
    user_id  text NOT NULL REFERENCES users (id),
    team_id  text NOT NULL,
    PRIMARY KEY (user_id, team_id)
);

-- An opaque bearer token: 256 random bits, of which only the SHA-256 is kept.
CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id),
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    last_used_at timestamptz
);

-- Append-only: every write and every read of a patient's record through the
-- API: who, what, when, from where.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    user_id     text,
    action      text NOT NULL,
    resource    text NOT NULL,
    patient_id  text,
    status      integer NOT NULL,
    client      text,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_patient ON audit_log (patient_id, at);
