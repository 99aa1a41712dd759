-- How a question's turn ended, so that a question whose turn never ended (its
-- gateway stopped, died or gave the session away) can be asked again, and one left
-- out of the conversation is not loaded into it. Set on user messages only: NULL
-- while the turn runs or waits, 'kept' (it finished, or was cancelled: the
-- conversation goes on from it) or 'dropped' (it failed, or never started).
ALTER TABLE messages ADD COLUMN outcome TEXT CHECK (outcome IN ('kept', 'dropped'));

-- Questions stored before outcomes were: their turns are long over.
UPDATE messages SET outcome = 'kept' WHERE role = 'user';
