-- Conversations: one row per session, its messages in the order they were said.
-- Times are milliseconds since the Unix epoch (UTC), as in the SQLite schema.

CREATE TABLE sessions (
    id          UUID PRIMARY KEY,
    user_id     TEXT,
    -- The gateway that holds the session now (see docs/storage.md); NULL: none.
    gateway     TEXT,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);

-- Retention deletes by last update.
CREATE INDEX sessions_updated ON sessions (updated_ms);

CREATE TABLE messages (
    -- The order messages were stored in; clocks may tie, this never does.
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id  UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    turn_id     UUID NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content     TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE INDEX messages_by_session ON messages (session_id, seq);
