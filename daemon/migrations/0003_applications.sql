-- One row per rejection that opened an application, and the history of each.
CREATE TABLE applications (
    id                          INTEGER PRIMARY KEY,
    state                       TEXT NOT NULL,
    company                     TEXT,
    company_key                 TEXT NOT NULL DEFAULT '',
    role                        TEXT,
    stage                       TEXT,
    contact_email               TEXT,
    contact_name                TEXT NOT NULL DEFAULT '',
    no_feedback                 INTEGER NOT NULL DEFAULT 0,
    rejection_message_id        TEXT NOT NULL UNIQUE,
    rejection_subject           TEXT NOT NULL DEFAULT '',
    rejection_references        TEXT NOT NULL DEFAULT '',  -- space separated
    rejection_at                TEXT,
    thread                      TEXT NOT NULL DEFAULT '[]', -- JSON list of Message-IDs
    opened_at                   TEXT NOT NULL,
    updated_at                  TEXT NOT NULL,
    request_draft_message_id    TEXT,
    request_drafted_at          TEXT,
    request_subject             TEXT,
    request_sent_message_id     TEXT,
    request_sent_at             TEXT,
    follow_up_draft_message_id  TEXT,
    follow_up_drafted_at        TEXT,
    follow_up_sent_message_id   TEXT,
    follow_up_sent_at           TEXT,
    reply_message_id            TEXT,
    reply_at                    TEXT,
    reply_from                  TEXT,
    reply_subject               TEXT,
    reply_references            TEXT,
    thank_you_draft_message_id  TEXT,
    thank_you_drafted_at        TEXT,
    draft_missing_since         TEXT,
    note                        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX applications_by_company ON applications (company_key, opened_at);
CREATE INDEX applications_by_state ON applications (state);

CREATE TABLE application_events (
    id             INTEGER PRIMARY KEY,
    application_id INTEGER NOT NULL REFERENCES applications (id),
    at             TEXT NOT NULL,
    event          TEXT NOT NULL,
    from_state     TEXT,
    to_state       TEXT NOT NULL,
    detail         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX application_events_by_application ON application_events (application_id, id);
