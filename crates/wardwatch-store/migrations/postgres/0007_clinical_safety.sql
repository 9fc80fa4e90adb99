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
