-- Conversations: one row per session, its messages in the order they were said.
-- Times are milliseconds since the Unix epoch (UTC). Ids are UUIDs written as text.

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT,
    -- The gateway that holds the session now (see docs/storage.md); NULL: none.
    gateway     TEXT,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);

-- Retention deletes by last update.
CREATE INDEX sessions_updated ON sessions (updated_ms);

CREATE TABLE messages (
    -- The order messages were stored in; clocks may tie, this never does.
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    turn_id     TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content     TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);

CREATE INDEX messages_by_session ON messages (session_id, seq);
