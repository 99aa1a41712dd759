//! What can go wrong with storage, in words a user may read: no message carries a
//! connection URL, a user name or a password.

/// Why a storage call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The database cannot be used right now: connection refused, no connection
    /// within the pool's timeout, disk full, database locked too long. Worth
    /// retrying later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// There is no such session.
    #[error("no such session")]
    NotFound,
    /// The database refused a statement (a constraint, a schema it does not know).
    #[error("storage failed: {0}")]
    Failed(String),
    /// What is stored cannot be read back as it was written.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The schema could not be brought up to date when the storage was opened.
    #[error("storage schema cannot be migrated: {0}")]
    Migration(String),
}

impl StorageError {
    /// The same error, its message starting with the engine it came from (for the
    /// errors of opening, which an operator reads at start).
    pub(super) fn in_engine(self, engine: &str) -> Self {
        match self {
            StorageError::Unavailable(text) => {
                StorageError::Unavailable(format!("{engine}: {text}"))
            }
            StorageError::Failed(text) => StorageError::Failed(format!("{engine}: {text}")),
            StorageError::Corrupt(text) => StorageError::Corrupt(format!("{engine}: {text}")),
            StorageError::Migration(text) => StorageError::Migration(format!("{engine}: {text}")),
            StorageError::NotFound => StorageError::NotFound,
        }
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match error {
            // io::Error's text is the OS's ("Connection refused (os error 111)"),
            // never the address or URL.
            E::Io(error) => {
                StorageError::Unavailable(format!("cannot reach the database: {error}"))
            }
            E::PoolTimedOut => {
                StorageError::Unavailable("no database connection within the time allowed".into())
            }
            E::PoolClosed => StorageError::Unavailable("the storage is closed".into()),
            E::Tls(error) => {
                StorageError::Unavailable(format!("TLS to the database failed: {error}"))
            }
            // The detail is about the wire protocol and names sqlx's source lines.
            E::Protocol(_) => StorageError::Unavailable("the database connection broke".into()),
            E::WorkerCrashed => StorageError::Unavailable("the database worker stopped".into()),
            E::Database(error) => {
                let text = error.message().to_owned();
                let code = error.code().unwrap_or_default();
                let kind = if error
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    postgres_kind(&code)
                } else {
                    sqlite_kind(&code)
                };
                match kind {
                    Some(Kind::Outage) => StorageError::Unavailable(text),
                    Some(Kind::Damage) => StorageError::Corrupt(text),
                    None => StorageError::Failed(text),
                }
            }
            E::Migrate(error) => StorageError::Migration(error.to_string()),
            error @ (E::ColumnDecode { .. }
            | E::Decode(_)
            | E::ColumnNotFound(_)
            | E::ColumnIndexOutOfBounds { .. }
            | E::TypeNotFound { .. }) => StorageError::Corrupt(error.to_string()),
            other => StorageError::Failed(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StorageError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        match error {
            sqlx::migrate::MigrateError::Execute(error) => match StorageError::from(error) {
                unavailable @ StorageError::Unavailable(_) => unavailable,
                other => StorageError::Migration(other.to_string()),
            },
            other => StorageError::Migration(other.to_string()),
        }
    }
}

enum Kind {
    Outage,
    Damage,
}

/// Sorts a SQLite extended result code (a number).
fn sqlite_kind(code: &str) -> Option<Kind> {
    // The primary code is the low byte.
    match code.parse::<i32>().ok()? & 0xff {
        // BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL
        5 | 6 | 8 | 10 | 13 | 14 | 15 => Some(Kind::Outage),
        // CORRUPT, NOTADB
        11 | 26 => Some(Kind::Damage),
        _ => None,
    }
}

/// Sorts a PostgreSQL SQLSTATE (five characters).
fn postgres_kind(code: &str) -> Option<Kind> {
    // 08: connection exception; 53: insufficient resources (disk full, too many
    // connections); 57P: the server shutting down or starting; 28: authentication;
    // 3D000: no such database; 58: system error (I/O).
    let outage = ["08", "53", "57P", "28", "3D000", "58"];
    if outage.iter().any(|prefix| code.starts_with(prefix)) {
        return Some(Kind::Outage);
    }
    // XX: internal error (data corrupted).
    code.starts_with("XX").then_some(Kind::Damage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_problems_are_outages() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let error = StorageError::from(sqlx::Error::Io(refused));
        assert!(matches!(error, StorageError::Unavailable(_)), "{error}");
        assert!(matches!(
            StorageError::from(sqlx::Error::PoolTimedOut),
            StorageError::Unavailable(_)
        ));
        assert!(matches!(
            StorageError::from(sqlx::Error::PoolClosed),
            StorageError::Unavailable(_)
        ));
    }

    #[test]
    fn database_codes_are_sorted_by_engine() {
        // SQLite: SQLITE_BUSY_SNAPSHOT (517) is BUSY; SQLITE_IOERR_WRITE (778) IOERR.
        assert!(matches!(sqlite_kind("5"), Some(Kind::Outage)));
        assert!(matches!(sqlite_kind("517"), Some(Kind::Outage)));
        assert!(matches!(sqlite_kind("778"), Some(Kind::Outage)));
        assert!(matches!(sqlite_kind("11"), Some(Kind::Damage)));
        // SQLITE_CONSTRAINT_FOREIGNKEY (787) is a refused statement.
        assert!(sqlite_kind("787").is_none());
        // PostgreSQL: connection failure, too many connections, admin shutdown, bad
        // password; a unique violation is a refused statement.
        for code in ["08006", "53300", "57P01", "28P01", "3D000"] {
            assert!(matches!(postgres_kind(code), Some(Kind::Outage)), "{code}");
        }
        assert!(matches!(postgres_kind("XX001"), Some(Kind::Damage)));
        assert!(postgres_kind("23505").is_none());
    }

    #[test]
    fn opening_errors_name_the_engine() {
        let error =
            StorageError::Unavailable("cannot reach the database".into()).in_engine("PostgreSQL");
        assert_eq!(
            error.to_string(),
            "storage unavailable: PostgreSQL: cannot reach the database"
        );
        assert_eq!(
            StorageError::NotFound.in_engine("SQLite"),
            StorageError::NotFound
        );
    }
}
