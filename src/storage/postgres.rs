//! `storage.url = "postgres://…"`: PostgreSQL, shared by several gateways.
//!
//! Each process keeps a pool of `storage.pool_size` connections. Waiting for one is
//! bounded ([`ACQUIRE_TIMEOUT`]), so while the database is down every call fails
//! fast as `Unavailable` instead of holding a turn.

use std::str::FromStr;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::grouped::{GroupedWrites, ROWS_PER_STATEMENT};
use super::{
    SavedMessage, SessionRecord, Storage, StorageError, StoredMessage, StoredRole, StoredSession,
    Timestamp, TurnOutcome, Write, sql_limit,
};

static MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// The longest a call waits for a connection, including connecting one.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// Conversations in PostgreSQL.
pub struct PostgresStorage {
    pool: PgPool,
}

type SessionRow = (Option<String>, Option<String>, i64, i64);
type MessageRow = (Uuid, String, String, i64, bool);

impl PostgresStorage {
    /// Connects to the database `url` names (at most `pool_size` connections) and
    /// brings its schema up to date. Errors name PostgreSQL, never the URL.
    pub async fn open(url: &str, pool_size: u32) -> Result<Self, StorageError> {
        Self::connect(url, pool_size)
            .await
            .map_err(|error| error.in_engine("PostgreSQL"))
    }

    async fn connect(url: &str, pool_size: u32) -> Result<Self, StorageError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| StorageError::Failed("the storage.url is not a valid URL".into()))?
            .application_name("parlor");
        // A first connection of its own: the pool would retry a refused connection
        // until its timeout and then report only the timeout, not the cause.
        let mut first = tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                StorageError::Unavailable(format!(
                    "no answer within {} s",
                    ACQUIRE_TIMEOUT.as_secs()
                ))
            })??;
        // Gateways starting together are safe: the migrator holds an advisory lock.
        MIGRATIONS.run(&mut first).await?;
        first.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    async fn load(
        &self,
        session_id: Uuid,
        latest: usize,
    ) -> Result<Option<StoredSession>, StorageError> {
        let session: Option<SessionRow> = sqlx::query_as(
            "SELECT user_id, gateway, created_ms, updated_ms FROM sessions WHERE id = $1",
        )
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((user_id, gateway, created, updated)) = session else {
            return Ok(None);
        };
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT turn_id, role, content, created_ms, \
             role = 'user' AND outcome IS NULL AND NOT EXISTS (SELECT 1 FROM messages AS a \
             WHERE a.session_id = m.session_id AND a.turn_id = m.turn_id AND a.role = 'assistant') \
             FROM messages AS m WHERE session_id = $1 AND outcome IS DISTINCT FROM 'dropped' \
             ORDER BY seq DESC LIMIT $2",
        )
        .bind(session_id)
        .bind(sql_limit(latest))
        .fetch_all(&self.pool)
        .await?;
        let mut messages = rows
            .into_iter()
            .map(|(turn_id, role, content, created, pending)| {
                Ok(SavedMessage {
                    turn_id,
                    role: StoredRole::parse(&role)?,
                    content,
                    created: Timestamp::from_millis(created),
                    pending,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        messages.reverse();
        Ok(Some(StoredSession {
            record: SessionRecord {
                id: session_id,
                user_id,
                gateway,
            },
            created: Timestamp::from_millis(created),
            updated: Timestamp::from_millis(updated),
            messages,
        }))
    }

    /// The writes in one transaction, in a few statements ([`GroupedWrites`]).
    async fn apply_all(&self, writes: &[Write]) -> Result<(), StorageError> {
        let now = Timestamp::now().as_millis();
        let writes = GroupedWrites::of(writes);
        let mut transaction = self.pool.begin().await?;
        for sessions in writes.sessions.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Postgres>::new(
                "INSERT INTO sessions (id, user_id, gateway, created_ms, updated_ms) ",
            );
            insert.push_values(sessions, |mut row, session| {
                row.push_bind(session.id)
                    .push_bind(&session.user_id)
                    .push_bind(&session.gateway)
                    .push_bind(now)
                    .push_bind(now);
            });
            insert.push(" ON CONFLICT (id) DO NOTHING");
            // Statements of every row count would crowd out the prepared ones.
            insert
                .build()
                .persistent(false)
                .execute(&mut *transaction)
                .await?;
        }
        if !writes.sessions_written_to.is_empty() {
            // The update locks the sessions' rows, so a purge cannot delete them
            // under the inserts; GREATEST keeps their times from going back.
            let bumped = sqlx::query(
                "UPDATE sessions SET updated_ms = GREATEST(updated_ms, $1) WHERE id = ANY($2)",
            )
            .bind(now)
            .bind(&writes.sessions_written_to)
            .execute(&mut *transaction)
            .await?;
            if bumped.rows_affected() < writes.sessions_written_to.len() as u64 {
                return Err(StorageError::NotFound);
            }
        }
        for messages in writes.messages.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Postgres>::new(
                "INSERT INTO messages (session_id, turn_id, role, content, created_ms, write_id) ",
            );
            insert.push_values(messages, |mut row, (session_id, message)| {
                row.push_bind(*session_id)
                    .push_bind(message.turn_id)
                    .push_bind(message.role.as_str())
                    .push_bind(&message.content)
                    .push_bind(now)
                    .push_bind(message.write_id);
            });
            // A message this batch stored before, when the batch is stored again.
            insert.push(" ON CONFLICT (write_id) DO NOTHING");
            insert
                .build()
                .persistent(false)
                .execute(&mut *transaction)
                .await?;
        }
        for (session_id, turn_id, outcome) in writes.outcomes {
            sqlx::query(
                "UPDATE messages SET outcome = $1 \
                 WHERE session_id = $2 AND turn_id = $3 AND role = 'user'",
            )
            .bind(outcome.as_str())
            .bind(session_id)
            .bind(turn_id)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// See [`Storage::adopt_question`]: three statements in one transaction.
    async fn adopt(
        &self,
        session_id: Uuid,
        turn_id: Uuid,
        text: String,
    ) -> Result<(), StorageError> {
        let now = Timestamp::now().as_millis();
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, gateway, created_ms, updated_ms) \
             VALUES ($1, NULL, NULL, $2, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(session_id)
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        // Locks the session's row first, so two adoptions of one turn (or a purge)
        // cannot interleave.
        sqlx::query("UPDATE sessions SET updated_ms = GREATEST(updated_ms, $1) WHERE id = $2")
            .bind(now)
            .bind(session_id)
            .execute(&mut *transaction)
            .await?;
        sqlx::query(
            "INSERT INTO messages (session_id, turn_id, role, content, created_ms) \
             SELECT $1, $2, 'user', $3, $4 WHERE NOT EXISTS \
             (SELECT 1 FROM messages WHERE session_id = $1 AND turn_id = $2)",
        )
        .bind(session_id)
        .bind(turn_id)
        .bind(&text)
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn claim_for(
        &self,
        session_id: Uuid,
        gateway: String,
    ) -> Result<Option<String>, StorageError> {
        // One statement: the subquery locks the row and reads the holder it
        // replaces. A concurrent claim waits on the lock, then reads this one's.
        let previous: Option<(Option<String>,)> = sqlx::query_as(
            "UPDATE sessions AS s SET gateway = $2 \
             FROM (SELECT id, gateway FROM sessions WHERE id = $1 FOR UPDATE) AS old \
             WHERE s.id = old.id RETURNING old.gateway",
        )
        .bind(session_id)
        .bind(&gateway)
        .fetch_optional(&self.pool)
        .await?;
        let (previous,) = previous.ok_or(StorageError::NotFound)?;
        Ok(previous.filter(|previous| *previous != gateway))
    }
}

impl Storage for PostgresStorage {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn create_session(&self, session: SessionRecord) -> BoxFuture<'_, Result<(), StorageError>> {
        async move { self.apply_all(&[Write::Session(session)]).await }.boxed()
    }

    fn append_message(
        &self,
        session_id: Uuid,
        message: StoredMessage,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        async move { self.apply_all(&[Write::Message(session_id, message)]).await }.boxed()
    }

    fn adopt_question(
        &self,
        session_id: Uuid,
        turn_id: Uuid,
        text: String,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        self.adopt(session_id, turn_id, text).boxed()
    }

    fn end_turn(
        &self,
        session_id: Uuid,
        turn_id: Uuid,
        outcome: TurnOutcome,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        let write = Write::TurnEnd {
            session_id,
            turn_id,
            outcome,
        };
        async move { self.apply_all(&[write]).await }.boxed()
    }

    fn load_session(
        &self,
        session_id: Uuid,
        latest: usize,
    ) -> BoxFuture<'_, Result<Option<StoredSession>, StorageError>> {
        self.load(session_id, latest).boxed()
    }

    fn claim(
        &self,
        session_id: Uuid,
        gateway: String,
    ) -> BoxFuture<'_, Result<Option<String>, StorageError>> {
        self.claim_for(session_id, gateway).boxed()
    }

    fn purge_older_than(&self, cutoff: Timestamp) -> BoxFuture<'_, Result<u64, StorageError>> {
        async move {
            // Messages go with their session (ON DELETE CASCADE).
            let purged = sqlx::query("DELETE FROM sessions WHERE updated_ms < $1")
                .bind(cutoff.as_millis())
                .execute(&self.pool)
                .await?;
            Ok(purged.rows_affected())
        }
        .boxed()
    }

    fn apply<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<(), StorageError>> {
        self.apply_all(writes).boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        }
        .boxed()
    }
}
