-- A draft about to be APPENDed: its Message-ID and Drafts' UIDNEXT just before, committed
-- first, so a crash between APPEND and the next commit can be told apart from "never
-- appended" and from "sent or deleted by the user since".
ALTER TABLE applications ADD COLUMN pending_step TEXT;
ALTER TABLE applications ADD COLUMN pending_message_id TEXT;
ALTER TABLE applications ADD COLUMN pending_drafts_uidnext INTEGER;
