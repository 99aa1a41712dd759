//! Helpers for tests against the real PostgreSQL at 127.0.0.1:5432 (trust
//! authentication, user `postgres`): each test gets a database of its own.

use std::time::Duration;

use sqlx::Connection;
use uuid::Uuid;

/// The PostgreSQL server, without a database.
pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";
/// Bounds creating and dropping a database.
const WAIT: Duration = Duration::from_secs(30);

/// A database of one test's own, dropped (connections and all) when it goes.
pub struct TestDatabase {
    pub name: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let name = format!("parlor_test_{}", Uuid::new_v4().simple());
        let created = tokio::time::timeout(WAIT, async {
            let mut admin = sqlx::PgConnection::connect(&format!("{SERVER}/postgres")).await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await?;
            admin.close().await
        })
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 answers");
        created.expect("a test database is created");
        Self { name }
    }

    pub fn url(&self) -> String {
        format!("{SERVER}/{}", self.name)
    }

    /// Waits (at most [`WAIT`]) until a gateway has stored the question of `turn_id`.
    pub async fn wait_for_question(&self, turn_id: Uuid) {
        let mut connection = sqlx::PgConnection::connect(&self.url()).await.unwrap();
        let stored = tokio::time::timeout(WAIT, async {
            loop {
                let (count,): (i64,) = sqlx::query_as(
                    "SELECT count(*) FROM messages WHERE turn_id = $1 AND role = 'user'",
                )
                .bind(turn_id)
                .fetch_one(&mut connection)
                .await
                .unwrap();
                if count > 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        stored.expect("the question is stored");
        connection.close().await.unwrap();
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await, and may run while the test's runtime unwinds: a thread
        // with a runtime of its own does the dropping.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                tokio::time::timeout(WAIT, async {
                    let mut admin =
                        sqlx::PgConnection::connect(&format!("{SERVER}/postgres")).await?;
                    // FORCE: the storage's pool may still hold connections.
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await?;
                    admin.close().await
                })
                .await
                .map_err(std::io::Error::other)?
                .map_err(std::io::Error::other)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}
