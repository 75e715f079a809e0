-- What the classifier decided about each INBOX message, and the people seen writing.
ALTER TABLE messages ADD COLUMN label TEXT;            -- rejection | closed | other
ALTER TABLE messages ADD COLUMN score REAL;
ALTER TABLE messages ADD COLUMN stage TEXT;            -- application | interview
ALTER TABLE messages ADD COLUMN company TEXT;
ALTER TABLE messages ADD COLUMN role TEXT;
ALTER TABLE messages ADD COLUMN reply_to TEXT;
ALTER TABLE messages ADD COLUMN no_feedback INTEGER;
ALTER TABLE messages ADD COLUMN corrected_label TEXT;  -- set by `nextround label`

-- Humans who wrote to the user, so a rejection from a no-reply address can be answered to
-- the recruiter who wrote before.
CREATE TABLE contacts (
    email        TEXT PRIMARY KEY,
    name         TEXT NOT NULL DEFAULT '',
    company_key  TEXT NOT NULL DEFAULT '',
    domain       TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    message_id   TEXT NOT NULL
);
CREATE INDEX contacts_by_company ON contacts (company_key);
CREATE INDEX contacts_by_domain ON contacts (domain);
