//! Conversation storage (docs/storage.md) through the library: the conformance suite
//! against every engine, restarts, PostgreSQL shared by two gateways, and
//! PostgreSQL outages.
//!
//! PostgreSQL runs at 127.0.0.1:5432 (trust authentication, user `postgres`). Each
//! test gets a database of its own, dropped when the test ends, passed or not.

mod common;
#[path = "storage/conformance.rs"]
mod conformance;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::{SERVER, TestDatabase};
use common::proxy::CuttableProxy;
use parlor::config::{StorageConfig, StorageUrl};
use parlor::storage::{self, SessionRecord, Storage, StorageError, StoredMessage};
use uuid::Uuid;

/// The most an outage may take to show as an error.
const FAIL_FAST: Duration = Duration::from_secs(5);
/// Bounds every other wait.
const WAIT: Duration = Duration::from_secs(30);

async fn open(config: &StorageConfig) -> Arc<dyn Storage> {
    tokio::time::timeout(WAIT, storage::open(config))
        .await
        .expect("opening took too long")
        .expect("the storage opens")
}

fn postgres_config(database: &TestDatabase) -> StorageConfig {
    config_for(&database.url(), std::path::Path::new("unused"))
}

fn config_for(url: &str, data_dir: &std::path::Path) -> StorageConfig {
    StorageConfig {
        data_dir: data_dir.to_path_buf(),
        url: url.parse().expect("a storage.url"),
        ..StorageConfig::default()
    }
}

#[tokio::test]
async fn the_memory_engine_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for("memory", dir.path());
    let storage = open(&config).await;
    assert_eq!(storage.kind(), "memory");
    conformance::run(storage).await;
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "memory writes nothing"
    );
}

#[tokio::test]
async fn the_sqlite_engine_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for("", &dir.path().join("data"));
    let storage = open(&config).await;
    assert_eq!(storage.kind(), "sqlite");
    assert!(dir.path().join("data").join("parlor.db").is_file());
    conformance::run(storage).await;
}

#[tokio::test]
async fn the_postgres_engine_conforms() {
    let database = TestDatabase::create().await;
    let storage = open(&postgres_config(&database)).await;
    assert_eq!(storage.kind(), "postgres");
    conformance::run(storage).await;
}

/// Writes a short conversation to a fresh session, held by `gateway-a`.
async fn write_conversation(storage: &dyn Storage) -> Uuid {
    let id = Uuid::new_v4();
    let record = SessionRecord {
        id,
        user_id: Some("alice".into()),
        gateway: None,
    };
    storage.create_session(record).await.unwrap();
    storage.claim(id, "gateway-a".into()).await.unwrap();
    let turn = Uuid::new_v4();
    storage
        .append_message(id, StoredMessage::user(turn, "What is parlor?"))
        .await
        .unwrap();
    storage
        .append_message(id, StoredMessage::assistant(turn, "A chat backend."))
        .await
        .unwrap();
    id
}

/// What a restarted process finds of [`write_conversation`]'s session.
async fn assert_conversation_kept(storage: &dyn Storage, id: Uuid) {
    let session = storage.load_session(id, 10).await.unwrap().expect("kept");
    assert_eq!(session.record.user_id.as_deref(), Some("alice"));
    assert_eq!(session.record.gateway.as_deref(), Some("gateway-a"));
    let texts: Vec<&str> = session
        .messages
        .iter()
        .map(|message| message.content.as_str())
        .collect();
    assert_eq!(texts, ["What is parlor?", "A chat backend."]);
    assert_eq!(session.messages[0].turn_id, session.messages[1].turn_id);
}

#[tokio::test]
async fn sqlite_keeps_conversations_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for("", dir.path());
    let storage = open(&config).await;
    let id = write_conversation(&*storage).await;
    drop(storage);

    let reopened = open(&config).await;
    assert_conversation_kept(&*reopened, id).await;
}

#[tokio::test]
async fn postgres_keeps_conversations_across_a_restart() {
    let database = TestDatabase::create().await;
    let storage = open(&postgres_config(&database)).await;
    let id = write_conversation(&*storage).await;
    drop(storage);

    // Opening again finds the schema up to date and migrates nothing.
    let reopened = open(&postgres_config(&database)).await;
    assert_conversation_kept(&*reopened, id).await;
}

#[tokio::test]
async fn two_gateways_share_a_postgres_database() {
    let database = TestDatabase::create().await;
    // Both start at once on an empty database: only one creates the schema.
    let config = postgres_config(&database);
    let (first, second) = tokio::time::timeout(
        WAIT,
        futures_util::future::join(storage::open(&config), storage::open(&config)),
    )
    .await
    .expect("both open");
    let (gateway_a, gateway_b) = (first.unwrap(), second.unwrap());

    let id = Uuid::new_v4();
    let record = SessionRecord {
        id,
        user_id: None,
        gateway: Some("gateway-a".into()),
    };
    gateway_a.create_session(record).await.unwrap();
    let turn = Uuid::new_v4();
    gateway_a
        .append_message(id, StoredMessage::user(turn, "asked on a"))
        .await
        .unwrap();

    // The client reconnects to the other gateway, which takes the session over.
    assert_eq!(
        gateway_b.claim(id, "gateway-b".into()).await.unwrap(),
        Some("gateway-a".into())
    );
    let session = gateway_b.load_session(id, 10).await.unwrap().unwrap();
    assert_eq!(session.messages.len(), 1);
    assert_eq!(session.messages[0].content, "asked on a");
    gateway_b
        .append_message(id, StoredMessage::assistant(turn, "answered on b"))
        .await
        .unwrap();

    let seen_by_a = gateway_a.load_session(id, 10).await.unwrap().unwrap();
    assert_eq!(seen_by_a.record.gateway.as_deref(), Some("gateway-b"));
    assert_eq!(seen_by_a.messages.len(), 2);
    assert_eq!(seen_by_a.messages[1].content, "answered on b");
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn an_unreachable_postgres_fails_fast_naming_the_engine_not_the_url() {
    let port = closed_port();
    let url = format!("postgres://parlor:hunter2@127.0.0.1:{port}/parlor");
    let started = Instant::now();
    let opened = tokio::time::timeout(FAIL_FAST, storage::open(&config_for(&url, "x".as_ref())))
        .await
        .expect("an outage fails fast");
    let Err(error) = opened else {
        panic!("opened a database on a closed port");
    };
    assert!(started.elapsed() < FAIL_FAST);
    assert!(matches!(error, StorageError::Unavailable(_)), "{error}");
    let text = error.to_string();
    assert!(
        text.starts_with("storage unavailable: PostgreSQL: cannot reach the database"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains(&port.to_string()), "{text}");
    assert!(!text.contains("postgres://"), "{text}");
}

#[tokio::test]
async fn a_postgres_that_never_answers_fails_within_the_timeout() {
    // Connections complete in the listen backlog, but nothing ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/parlor",
        silent.local_addr().unwrap().port()
    );
    let opened = tokio::time::timeout(FAIL_FAST, storage::open(&config_for(&url, "x".as_ref())))
        .await
        .expect("a silent server fails fast");
    let Err(error) = opened else {
        panic!("opened a database that never answered");
    };
    assert_eq!(
        error,
        StorageError::Unavailable("PostgreSQL: no answer within 2 s".into())
    );
}

#[tokio::test]
async fn a_missing_postgres_database_is_unavailable() {
    let url = format!("{SERVER}/parlor_test_missing_{}", Uuid::new_v4().simple());
    let opened = tokio::time::timeout(FAIL_FAST, storage::open(&config_for(&url, "x".as_ref())))
        .await
        .expect("fails fast");
    let Err(error) = opened else {
        panic!("opened a database that does not exist");
    };
    assert!(matches!(error, StorageError::Unavailable(_)), "{error}");
    assert!(error.to_string().contains("does not exist"), "{error}");
}

#[tokio::test]
async fn a_postgres_outage_fails_calls_fast_and_they_work_again_after_it() {
    let database = TestDatabase::create().await;
    let proxy = CuttableProxy::start("127.0.0.1:5432");
    let through_proxy = format!(
        "postgres://postgres:hunter2@127.0.0.1:{}/{}",
        proxy.port, database.name
    );
    let storage = open(&config_for(&through_proxy, "x".as_ref())).await;
    let id = Uuid::new_v4();
    let record = SessionRecord {
        id,
        user_id: None,
        gateway: None,
    };
    storage.create_session(record).await.unwrap();
    let turn = Uuid::new_v4();
    storage
        .append_message(id, StoredMessage::user(turn, "before"))
        .await
        .unwrap();

    proxy.cut();
    let started = Instant::now();
    let failed = tokio::time::timeout(
        FAIL_FAST,
        storage.append_message(id, StoredMessage::assistant(turn, "during")),
    )
    .await
    .expect("an outage fails fast");
    let error = failed.expect_err("nothing is stored during an outage");
    assert!(matches!(error, StorageError::Unavailable(_)), "{error}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
    let ping = tokio::time::timeout(FAIL_FAST, storage.ping())
        .await
        .expect("a ping fails fast too");
    assert!(
        matches!(ping, Err(StorageError::Unavailable(_))),
        "{ping:?}"
    );
    assert!(started.elapsed() < FAIL_FAST * 2);

    proxy.restore();
    tokio::time::timeout(WAIT, async {
        while storage.ping().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the storage recovers once the database is back");
    storage
        .append_message(id, StoredMessage::assistant(turn, "after"))
        .await
        .unwrap();
    let session = storage.load_session(id, 10).await.unwrap().unwrap();
    let texts: Vec<&str> = session
        .messages
        .iter()
        .map(|message| message.content.as_str())
        .collect();
    assert_eq!(texts, ["before", "after"]);
}

#[test]
fn the_postgres_url_never_shows_in_the_configuration() {
    let url: StorageUrl = "postgres://parlor:hunter2@db.internal:5432/parlor"
        .parse()
        .unwrap();
    let config = StorageConfig {
        url,
        ..StorageConfig::default()
    };
    let shown = format!("{config:?} {}", config.url);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("PostgreSQL at db.internal:5432/parlor"),
        "{shown}"
    );
}
