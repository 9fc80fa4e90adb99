-- Alerting: flags become alerts per patient episode, routed to the team
-- responsible for the patient, escalated until acknowledged. Everything a
-- notification needs is committed (outbox) before anything is sent.

-- An alert: one open episode per patient and kind (clinical or technical).
CREATE TABLE alerts (
    id                 bigserial PRIMARY KEY,
    patient_id         text NOT NULL REFERENCES patients (id),
    team_id            text NOT NULL,
    -- clinical: deterioration; technical: a silent device; delivery:
    -- notifications that could not be delivered (to the team's fallback).
    kind               text NOT NULL CHECK (kind IN ('clinical', 'technical', 'delivery')),
    severity           text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'emergency')),
    state              text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    opened_at          timestamptz NOT NULL,
    acknowledged_at    timestamptz,
    acknowledged_by    text,
    resolved_at        timestamptz,
    resolved_by        text,
    outcome            text CHECK (outcome IN ('reviewed_no_action', 'advice_given', 'visit_arranged',
                                               'escalated_emergency', 'device_or_data_issue', 'other')),
    note               text,
    -- The escalation policy as it stood when the alert opened.
    policy             jsonb NOT NULL,
    tier               integer NOT NULL,
    -- Notifications of the current tier so far (the last tier repeats).
    round              integer NOT NULL DEFAULT 0,
    next_escalation_at timestamptz,
    summary            text NOT NULL
);
-- Two flags a millisecond apart open one alert: a constraint, not a race.
CREATE UNIQUE INDEX alerts_one_open ON alerts (patient_id, kind) WHERE state <> 'resolved';
CREATE INDEX alerts_due ON alerts (next_escalation_at) WHERE state = 'open';
CREATE INDEX alerts_team ON alerts (team_id, state, opened_at DESC);
-- Time to acknowledge, read by the engine for its per-team histogram.
CREATE INDEX alerts_acknowledged ON alerts (acknowledged_at) WHERE acknowledged_at IS NOT NULL;

-- The flags an alert rests on.
CREATE TABLE alert_flags (
    alert_id   bigint NOT NULL REFERENCES alerts (id),
    flag_id    bigint NOT NULL REFERENCES flags (id),
    joined_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert_id, flag_id)
);

-- Every state change of an alert, append-only: who, what, when, why.
CREATE TABLE alert_events (
    id        bigserial PRIMARY KEY,
    alert_id  bigint NOT NULL REFERENCES alerts (id),
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    kind      text NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);

-- The outbox: one row per notification to one target. The idempotency key
-- (alert, tier, round, target) is sent with it so a receiver can drop a repeat.
CREATE TABLE deliveries (
    id               bigserial PRIMARY KEY,
    alert_id         bigint NOT NULL REFERENCES alerts (id),
    purpose          text NOT NULL CHECK (purpose IN ('page', 'update', 'undeliverable')),
    tier             integer NOT NULL,
    round            integer NOT NULL,
    channel          text NOT NULL,
    -- The target as JSON (channel, address; a webhook's secret is named,
    -- never stored).
    target           text NOT NULL,
    idempotency_key  text NOT NULL UNIQUE,
    status           text NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    -- Claimed by a sender until then; a crash lets the claim lapse and the
    -- delivery is sent again under the same idempotency key.
    lease_until      timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_alert ON deliveries (alert_id);

-- A clinician's snooze of one rule for one patient, bounded in time.
CREATE TABLE snoozes (
    id          bigserial PRIMARY KEY,
    patient_id  text NOT NULL REFERENCES patients (id),
    rule        text NOT NULL,
    severity    text NOT NULL,
    until       timestamptz NOT NULL,
    by_user     text NOT NULL CHECK (by_user <> ''),
    reason      text NOT NULL CHECK (reason <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Set when the snooze ran out and the rule's open flag was handed back
    -- to alerting (so a flag held back by it is not forgotten).
    ended_at    timestamptz
);
CREATE INDEX snoozes_ending ON snoozes (until) WHERE ended_at IS NULL;
CREATE INDEX snoozes_active ON snoozes (patient_id, rule, until);

-- Flag events not yet applied to alerts. Marked in the same transaction as
-- the alerts they produced, so each is applied exactly once; claimed with
-- FOR UPDATE SKIP LOCKED, so several engines never apply one twice.
ALTER TABLE flag_events
    ADD COLUMN alerted_at timestamptz,
    -- The alert it went to, or why none (snoozed until ..., no open alert).
    ADD COLUMN alert_id bigint REFERENCES alerts (id),
    ADD COLUMN alert_note text;
CREATE INDEX flag_events_pending ON flag_events (id) WHERE alerted_at IS NULL;
