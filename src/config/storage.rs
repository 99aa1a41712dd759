//! `[storage]`: where parlor keeps what it writes — the search indexes under
//! `data_dir`, and the conversations in the database `url` names (docs/storage.md).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::Secret;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Where parlor keeps what it writes (search indexes under `indexes/`, the
    /// SQLite database `parlor.db`); relative to the working directory.
    pub data_dir: PathBuf,
    /// The database conversations are kept in.
    pub url: StorageUrl,
    /// Sessions not updated for this many days are deleted with their messages;
    /// 0 keeps them forever.
    pub retention_days: u32,
    /// Connections to PostgreSQL each process may hold (SQLite keeps its own small
    /// pool, since it has one writer at a time anyway).
    pub pool_size: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("parlor-data"),
            url: StorageUrl::Sqlite,
            retention_days: 30,
            pool_size: 8,
        }
    }
}

impl StorageConfig {
    /// The most connections `pool_size` may ask for.
    pub const MAX_POOL_SIZE: u32 = 1_000;

    /// The SQLite database file, used when `url` is empty.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("parlor.db")
    }
}

/// `storage.url`: the database engine, parsed at load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StorageUrl {
    /// `""`: SQLite in `<data_dir>/parlor.db`, for one process.
    #[default]
    Sqlite,
    /// `postgres://…` or `postgresql://…`: PostgreSQL, shared by several gateways.
    /// It usually carries a password, so it is kept as a [`Secret`].
    Postgres(Secret),
    /// `"memory"`: nothing on disk; everything is gone when the process ends.
    Memory,
}

impl StorageUrl {
    const MEMORY: &'static str = "memory";

    /// What to tell an operator about the engine: the PostgreSQL host, port and
    /// database, never the user or password.
    pub fn describe(&self) -> String {
        match self {
            StorageUrl::Sqlite => "SQLite".into(),
            StorageUrl::Memory => "memory (nothing kept on disk)".into(),
            StorageUrl::Postgres(url) => match Url::parse(url.expose()) {
                Ok(url) => format!(
                    "PostgreSQL at {}:{}{}",
                    url.host_str().unwrap_or("localhost"),
                    url.port().unwrap_or(5432),
                    url.path()
                ),
                Err(_) => "PostgreSQL".into(),
            },
        }
    }
}

impl FromStr for StorageUrl {
    type Err = String;

    // The messages never quote the value: a PostgreSQL URL may hold a password.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "must be empty (SQLite under storage.data_dir), \"memory\" or a \
                                postgres:// URL";
        if text.is_empty() {
            return Ok(Self::Sqlite);
        }
        if text == Self::MEMORY {
            return Ok(Self::Memory);
        }
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            let scheme = text
                .split_once("://")
                .map(|(scheme, _)| scheme)
                .filter(|scheme| scheme.chars().all(|c| c.is_ascii_alphanumeric()));
            return Err(match scheme {
                Some(scheme) => format!("{EXPECTED}; the scheme is {scheme:?}"),
                None => format!("{EXPECTED}; it is not a URL"),
            });
        }
        // Parsed as the client will parse it, so a bad URL stops the start rather
        // than the first connection.
        sqlx::postgres::PgConnectOptions::from_str(text)
            .map_err(|problem| format!("{EXPECTED}; the URL is invalid ({})", inner(&problem)))?;
        Ok(Self::Postgres(Secret::new(text)))
    }
}

/// The cause sqlx wraps in a configuration error (its own text adds nothing).
fn inner(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Configuration(source) => source.to_string(),
        other => other.to_string(),
    }
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl TryFrom<String> for StorageUrl {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<StorageUrl> for String {
    fn from(url: StorageUrl) -> String {
        match url {
            StorageUrl::Sqlite => String::new(),
            StorageUrl::Memory => StorageUrl::MEMORY.into(),
            StorageUrl::Postgres(url) => url.expose().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POSTGRES: &str = "postgres://parlor:hunter2@db.internal:6543/chat";

    #[test]
    fn empty_is_sqlite_and_memory_is_memory() {
        assert_eq!("".parse(), Ok(StorageUrl::Sqlite));
        assert_eq!("memory".parse(), Ok(StorageUrl::Memory));
        assert_eq!(String::from(StorageUrl::Memory), "memory");
        assert_eq!(String::from(StorageUrl::Sqlite), "");
    }

    #[test]
    fn a_postgres_url_is_kept_secret_and_written_back_whole() {
        let url: StorageUrl = POSTGRES.parse().unwrap();
        assert!(matches!(&url, StorageUrl::Postgres(secret) if secret.expose() == POSTGRES));
        let shown = format!("{url:?} {url}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("parlor:"), "{shown}");
        assert_eq!(url.describe(), "PostgreSQL at db.internal:6543/chat");
        assert_eq!(String::from(url), POSTGRES);
        let long_scheme: StorageUrl = "postgresql://localhost/parlor".parse().unwrap();
        assert_eq!(
            long_scheme.describe(),
            "PostgreSQL at localhost:5432/parlor"
        );
    }

    #[test]
    fn other_values_are_refused_without_quoting_them() {
        let problem = "mysql://root:hunter2@x/db"
            .parse::<StorageUrl>()
            .unwrap_err();
        assert_eq!(
            problem,
            "must be empty (SQLite under storage.data_dir), \"memory\" or a postgres:// URL; \
             the scheme is \"mysql\""
        );
        let problem = "parlor.db".parse::<StorageUrl>().unwrap_err();
        assert!(problem.ends_with("it is not a URL"), "{problem}");
        let problem = "postgres://u:hunter2@x:99999/db"
            .parse::<StorageUrl>()
            .unwrap_err();
        assert!(problem.contains("the URL is invalid"), "{problem}");
        assert!(!problem.contains("hunter2"), "{problem}");
    }

    #[test]
    fn the_sqlite_file_is_in_the_data_dir() {
        let config = StorageConfig {
            data_dir: "/var/lib/parlor".into(),
            ..StorageConfig::default()
        };
        assert_eq!(
            config.sqlite_path(),
            PathBuf::from("/var/lib/parlor/parlor.db")
        );
    }
}
