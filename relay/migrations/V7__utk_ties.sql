-- utk ties (issue 24): HubSpot has tied this browser's usertoken to this contact, as HubSpot itself
-- answered (`GET /contacts/v1/contact/utk/{utk}/profile`); pages of that browser then send `{id}`
-- only. Keyed by both, so a contact the user moved to (a merge, a new contact) is asked again; the
-- user's ties go when their contact link is dropped (deleted, merged away, privacy-deleted).
CREATE TABLE utk_ties (
    utk TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    sub TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (utk, contact_id)
);
CREATE INDEX utk_ties_by_sub ON utk_ties(sub);
CREATE INDEX utk_ties_at ON utk_ties(at);
