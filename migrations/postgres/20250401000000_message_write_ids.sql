-- Each message names the write that stored it, so that a batch stored again after
-- its commit went unanswered (the connection dropped mid-commit) stores it once.
-- Time-ordered ids: new entries go at the end of the index, not all over it.
-- NULL for messages stored before, and for adopted questions (stored once anyway).
ALTER TABLE messages ADD COLUMN write_id UUID;
CREATE UNIQUE INDEX messages_by_write ON messages (write_id);
