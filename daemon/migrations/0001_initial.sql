-- Sync position per folder, and every message seen.
CREATE TABLE folders (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL,            -- inbox | drafts | sent
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,         -- highest UID that is settled; 0 while backfilling
    backfilled  INTEGER NOT NULL DEFAULT 0,
    synced_at   TEXT NOT NULL
);

CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    folder      TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    message_id  TEXT NOT NULL,            -- the header's, or a synthetic <hash@nextround.invalid>
    in_reply_to TEXT NOT NULL DEFAULT '',
    refs        TEXT NOT NULL DEFAULT '',  -- References, space separated
    sender      TEXT NOT NULL DEFAULT '',
    subject     TEXT NOT NULL DEFAULT '',
    sent_at     TEXT,                     -- the Date header, UTC ISO 8601
    size        INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL,            -- parsed | unparsable | failed (error says why)
    error       TEXT,
    seen_at     TEXT NOT NULL,
    UNIQUE (folder, uidvalidity, uid)
);
CREATE INDEX messages_by_message_id ON messages (message_id);
