-- The audit trails are append-only, enforced by the database as on SQLite:
-- who read or changed a patient's record, every clinical setting change and
-- every alert event can be added to, never edited or removed. (TRUNCATE is
-- refused too.) A deployment should also run the engine as a role without
-- UPDATE or DELETE on these tables, so the trigger cannot be dropped by it.
CREATE FUNCTION wardwatch_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION wardwatch_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION wardwatch_append_only();
CREATE TRIGGER patient_settings_audit_append_only BEFORE UPDATE OR DELETE ON patient_settings_audit
    FOR EACH ROW EXECUTE FUNCTION wardwatch_append_only();
CREATE TRIGGER patient_settings_audit_no_truncate BEFORE TRUNCATE ON patient_settings_audit
    FOR EACH STATEMENT EXECUTE FUNCTION wardwatch_append_only();
CREATE TRIGGER alert_events_append_only BEFORE UPDATE OR DELETE ON alert_events
    FOR EACH ROW EXECUTE FUNCTION wardwatch_append_only();
CREATE TRIGGER alert_events_no_truncate BEFORE TRUNCATE ON alert_events
    FOR EACH STATEMENT EXECUTE FUNCTION wardwatch_append_only();
