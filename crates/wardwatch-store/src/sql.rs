//! SQL that reads the same on PostgreSQL and SQLite, written once.
//!
//! Both backends bind parameters as `$n` and share one schema shape, so a
//! statement that needs no dialect (no `now()`, `jsonb`, arrays or
//! `SKIP LOCKED`) lives here and both `postgres/` and `sqlite/` run it:
//! changing it changes both, and the backend tests run it on both.

/// Users, tokens and the audit trail.
pub(crate) mod access {
    pub(crate) const AUDIT_ENTRIES: &str =
        "SELECT id, at, user_id, action, resource, patient_id, status, client, detail \
         FROM audit_log ORDER BY id DESC LIMIT $1";
}

/// Alerts, their escalation and the delivery outbox.
pub(crate) mod alerts {
    pub(crate) const ACTIVE_SNOOZE: &str =
        "SELECT severity, until, measure FROM snoozes WHERE patient_id = $1 AND rule = $2 \
         AND until > $3 ORDER BY until DESC LIMIT 1";
    pub(crate) const MARK_FLAG_EVENT_ALERTED: &str =
        "UPDATE flag_events SET alerted_at = $2, alert_id = $3, alert_note = $4 WHERE id \
         = $1";
    pub(crate) const INSERT_ALERT: &str =
        "INSERT INTO alerts (patient_id, team_id, kind, severity, state, opened_at, \
         policy, tier, next_escalation_at, summary, paged) VALUES ($1, $2, $3, $4, \
         'open', $5, $6, $7, $8, $9, $10) RETURNING id";
    pub(crate) const WORSEN_ALERT: &str =
        "UPDATE alerts SET severity = $2, tier = $3, round = $4, next_escalation_at = $5, \
         state = 'open', acknowledged_at = NULL, acknowledged_by = NULL, summary = $6, \
         paged = $7 WHERE id = $1";
    pub(crate) const UPDATE_ALERT_SUMMARY: &str =
        "UPDATE alerts SET summary = $2, paged = COALESCE($3, paged) WHERE id = $1";
    pub(crate) const PENDING_UPDATE_EXISTS: &str =
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE alert_id = $1 AND purpose = \
         'update' AND status = 'pending' AND (lease_until IS NULL OR lease_until < $2))";
    pub(crate) const AUTO_RESOLVE_ALERT: &str =
        "UPDATE alerts SET state = 'resolved', resolved_at = $2, resolved_by = \
         'wardwatch', note = 'resolved automatically: the condition cleared', \
         next_escalation_at = NULL WHERE id = $1";
    pub(crate) const SET_NEXT_ESCALATION: &str =
        "UPDATE alerts SET next_escalation_at = $2 WHERE id = $1";
    pub(crate) const ESCALATE_ALERT: &str =
        "UPDATE alerts SET tier = $2, round = $3, next_escalation_at = $4 WHERE id = $1";
    pub(crate) const MARK_DELIVERY_SENT: &str =
        "UPDATE deliveries SET status = 'sent', sent_at = $2, lease_until = NULL, \
         last_error = NULL WHERE id = $1";
    pub(crate) const RETRY_DELIVERY: &str =
        "UPDATE deliveries SET next_attempt_at = $2, lease_until = NULL, last_error = $3 \
         WHERE id = $1 AND status = 'pending'";
    pub(crate) const FAIL_DELIVERY: &str =
        "UPDATE deliveries SET status = 'failed', lease_until = NULL, last_error = $2 \
         WHERE id = $1 AND status = 'pending'";
    pub(crate) const COUNT_TEAM_ALERTS_SINCE: &str =
        "SELECT count(*) FROM alerts WHERE team_id = $1 AND opened_at >= $2";
    pub(crate) const LAST_ALERT_EVENT_ID: &str = "SELECT COALESCE(max(id), 0) FROM alert_events";
    pub(crate) const ACKNOWLEDGE_ALERT: &str =
        "UPDATE alerts SET state = 'acknowledged', acknowledged_at = $2, acknowledged_by \
         = $3, next_escalation_at = NULL WHERE id = $1 AND state = 'open'";
    pub(crate) const RESOLVE_ALERT: &str =
        "UPDATE alerts SET state = 'resolved', resolved_at = $2, resolved_by = $3, \
         outcome = $4, note = $5, next_escalation_at = NULL WHERE id = $1 AND state <> \
         'resolved'";
    pub(crate) const OPEN_ALERT_OF_PATIENT: &str =
        "SELECT id FROM alerts WHERE patient_id = $1 AND state <> 'resolved' ORDER BY id \
         LIMIT 1";
}

/// Patients, devices and the notes on readings.
pub(crate) mod records {
    pub(crate) const PATIENT_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM patients WHERE id = $1)";
    pub(crate) const INSERT_DEVICE: &str =
        "INSERT INTO devices (id) VALUES ($1) ON CONFLICT DO NOTHING";
    pub(crate) const INSERT_ASSIGNMENT: &str =
        "INSERT INTO device_assignments (device_id, patient_id, valid_from) VALUES ($1, \
         $2, $3)";
    pub(crate) const PATIENT_BY_NHS_NUMBER: &str =
        "SELECT id, team_id FROM patients WHERE nhs_number = $1";
    pub(crate) const INSERT_PATIENT_WITH_IDENTITY: &str =
        "INSERT INTO patients (id, team_id, pathway, nhs_number, date_of_birth) VALUES \
         ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
    pub(crate) const SET_PATIENT_TEAM: &str = "UPDATE patients SET team_id = $2 WHERE id = $1";
    pub(crate) const UPSERT_DEVICE: &str =
        "INSERT INTO devices (id, model, kind) VALUES ($1, $2, $3) ON CONFLICT (id) DO \
         UPDATE SET model = excluded.model, kind = excluded.kind";
    pub(crate) const READING_NOTES_IN_RANGE: &str =
        "SELECT id, vital, time, device_id, author, text, created_at FROM reading_notes \
         WHERE patient_id = $1 AND time >= $2 AND time < $3 ORDER BY time, id";
}

/// Flags, patient settings and team moves.
pub(crate) mod rules {
    pub(crate) const MOVE_OPEN_ALERTS_TO_TEAM: &str =
        "UPDATE alerts SET team_id = $2, policy = COALESCE($3, policy) WHERE patient_id = \
         $1 AND state <> 'resolved' RETURNING id";
    pub(crate) const TEAM_OF_PATIENT: &str = "SELECT team_id FROM patients WHERE id = $1";
    pub(crate) const CARE_PLAN_OXYGEN_AUDITED: &str =
        "SELECT EXISTS (SELECT 1 FROM patient_settings_audit WHERE patient_id = $1 AND \
         field = 'care_plan_oxygen')";
    pub(crate) const DELETE_PATIENT_LIMIT: &str =
        "DELETE FROM patient_limits WHERE patient_id = $1 AND vital = $2";
    pub(crate) const INSERT_SET_ASIDE_FLAG: &str =
        "INSERT INTO flags_set_aside (set_aside_at, patient_id, rule, technical, \
         severity, change, at, summary, evidence, reason) VALUES ($1, $2, $3, $4, $5, $6, \
         $7, $8, $9, $10)";
    pub(crate) const CLEAR_FLAG: &str =
        "UPDATE flags SET cleared_at = $3, updated_at = $3 WHERE patient_id = $1 AND rule \
         = $2 AND cleared_at IS NULL RETURNING id";
    pub(crate) const OPEN_FLAGS: &str =
        "SELECT patient_id, rule, severity FROM flags WHERE cleared_at IS NULL ORDER BY \
         patient_id, rule";
    pub(crate) const FLAGS_RAISED_BETWEEN: &str =
        "SELECT patient_id, rule, severity, raised_at FROM flags WHERE raised_at >= $1 \
         AND raised_at < $2 ORDER BY raised_at, patient_id, rule";
}

/// Pruning what the engine keeps for a while.
pub(crate) mod maintenance {
    pub(crate) const PRUNE_ANCHORS: &str = "DELETE FROM relative_time_anchors WHERE anchor < $1";
    pub(crate) const PRUNE_QUARANTINE: &str =
        "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine WHERE last_seen_at \
         < $1 ORDER BY id LIMIT $2)";
}

/// The columns of an [`AlertRow`](crate::alerts::AlertRow), read by name:
/// the plain ones are the same on both backends, and each backend passes
/// its own expression for the tier's name from the policy snapshot and the
/// alert's distinct rules as a JSON array (the dialects differ there).
/// A new column on `alerts` is added here once.
macro_rules! alert_columns {
    ($tier_name:literal, $rules:literal) => {
        concat!(
            "a.id, a.patient_id, a.team_id, a.kind, a.severity, a.state, a.tier, a.summary, \
             a.opened_at, a.acknowledged_by, ",
            $tier_name,
            " AS tier_name, ",
            $rules,
            " AS rules"
        )
    };
}
pub(crate) use alert_columns;
