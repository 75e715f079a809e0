-- A message's To, as JSON [[name, address], ...] ('' for none): whom the user wrote to in
-- a sent copy recorded before the application it answers was opened (a request sent by
-- hand), so the follow-up goes to that person.
ALTER TABLE messages ADD COLUMN recipient TEXT NOT NULL DEFAULT '';
