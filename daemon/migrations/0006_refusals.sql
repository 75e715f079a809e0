-- Messages the server would not give: in how many cycles, since when. One is recorded as
-- failed (and passed) only once its refusal has lasted, so a server's passing trouble never
-- costs a message.
CREATE TABLE refusals (
    folder      TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    times       INTEGER NOT NULL,
    first_at    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    PRIMARY KEY (folder, uidvalidity, uid)
);
