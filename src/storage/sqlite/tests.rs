use super::*;

async fn journal_mode(storage: &SqliteStorage) -> String {
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&storage.pool)
        .await
        .unwrap();
    mode
}

#[tokio::test]
async fn opening_creates_the_folder_and_a_wal_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("data").join("parlor.db");
    let storage = SqliteStorage::open(&path).await.unwrap();
    assert!(path.is_file());
    assert_eq!(journal_mode(&storage).await, "wal");
    let (foreign_keys,): (i64,) = sqlx::query_as("PRAGMA foreign_keys")
        .fetch_one(&storage.pool)
        .await
        .unwrap();
    assert_eq!(foreign_keys, 1, "messages must go with their session");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_fails_naming_sqlite_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("parlor.db");
    std::fs::write(
        &path,
        "this is not a database, but it is long enough to look like one's header page",
    )
    .unwrap();
    let error = match SqliteStorage::open(&path).await {
        Ok(_) => panic!("opened a text file as a database"),
        Err(error) => error,
    };
    let text = error.to_string();
    assert!(text.contains("SQLite at "), "{text}");
    assert!(text.contains("parlor.db"), "{text}");
}

#[tokio::test]
async fn an_unwritable_folder_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the folder should be.
    let blocker = dir.path().join("data");
    std::fs::write(&blocker, "").unwrap();
    let error = match SqliteStorage::open(&blocker.join("parlor.db")).await {
        Ok(_) => panic!("opened a database under a file"),
        Err(error) => error,
    };
    assert!(matches!(error, StorageError::Unavailable(_)), "{error}");
    assert!(
        error.to_string().contains("cannot create its folder"),
        "{error}"
    );
}

#[tokio::test]
async fn a_database_from_before_write_ids_keeps_its_messages_and_takes_new_ones_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("parlor.db");
    let (id, old_turn) = (Uuid::new_v4(), Uuid::new_v4());
    {
        // The schema as the migrations before `write_id` left it, with a message.
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let before = MIGRATIONS
            .migrations
            .iter()
            .take_while(|migration| !migration.description.contains("write ids"));
        let earlier = Migrator {
            migrations: std::borrow::Cow::Owned(before.cloned().collect()),
            ..Migrator::DEFAULT
        };
        assert_eq!(earlier.migrations.len(), 2);
        earlier.run(&pool).await.unwrap();
        let (id, old_turn) = (
            id.hyphenated().to_string(),
            old_turn.hyphenated().to_string(),
        );
        sqlx::query("INSERT INTO sessions VALUES (?, NULL, NULL, 0, 0)")
            .bind(&id)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO messages (session_id, turn_id, role, content, created_ms, outcome) \
             VALUES (?, ?, 'user', 'stored before', 0, 'kept')",
        )
        .bind(&id)
        .bind(&old_turn)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }

    let storage = SqliteStorage::open(&path).await.unwrap();
    let turn = Uuid::new_v4();
    let batch = [
        Write::Message(id, StoredMessage::user(turn, "q")),
        Write::Message(id, StoredMessage::assistant(turn, "a")),
    ];
    storage.apply(&batch).await.unwrap();
    storage.apply(&batch).await.unwrap();
    let session = storage.load_session(id, 10).await.unwrap().unwrap();
    let contents: Vec<&str> = (session.messages.iter())
        .map(|message| message.content.as_str())
        .collect();
    assert_eq!(contents, ["stored before", "q", "a"]);
}
