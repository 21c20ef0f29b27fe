-- A new user's contact resolution across relays (relay.rs, `contact_for`). While one relay reads
-- HubSpot for a user whose contact the store does not know, and creates it, it holds the user's
-- row here until `claimed_until` (ms; a relay that dies holding it loses it then); another relay
-- asked for the same user waits for that outcome instead of reading and creating again.
-- `id_missed_at`: when HubSpot last answered that no contact has this user's id; `missed_email`,
-- `email_missed_at`: the email no contact held then. A retry soon after skips those reads (the
-- create that follows is by the unique id, and answers 409 for an email taken since). The row
-- goes once the user's contact is stored.
CREATE TABLE contact_resolutions (
    sub TEXT PRIMARY KEY,
    claimed_by TEXT,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    id_missed_at BIGINT,
    missed_email TEXT,
    email_missed_at BIGINT
);
-- Rows of users who never got a contact (HubSpot kept failing) are pruned by the claim's end.
CREATE INDEX contact_resolutions_until ON contact_resolutions(claimed_until);
