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
