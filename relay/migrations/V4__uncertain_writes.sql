-- A HubSpot write whose answer never came (a timeout, a dropped connection, a relay that died
-- while writing) may still land, later than a newer one. `uncertain_until` (ms) is the latest
-- such an attempt for this user's contact may land; 0 when none is outstanding. While it is not 0
-- no email of the user is leased and no change is finished: once it has passed, the outbox reads
-- the contact back and writes again if a stale value landed (see outbox.rs). A newer change keeps
-- it (the earlier attempt may still land on top of it).
ALTER TABLE outbox ADD COLUMN uncertain_until BIGINT NOT NULL DEFAULT 0;
-- A job being written when this migration runs (its relay stopped or died mid-write): its attempt
-- may land until its claim's end plus the default HSQ_HUBSPOT_LATE_WRITE_MS (120 s).
UPDATE outbox SET uncertain_until = claimed_until + 120000 WHERE claimed_by LIKE 'applying:%' AND state = 'pending';
