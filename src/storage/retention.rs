//! `storage.retention_days`: sessions not updated within it are deleted, with their
//! messages, by a background task.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{Storage, Timestamp};

/// How often the purger runs (it also runs once at start).
pub const PURGE_INTERVAL: Duration = Duration::from_secs(3_600);

const DAY: Duration = Duration::from_secs(86_400);

/// The running purger; dropping it stops it.
#[derive(Debug)]
pub struct PurgerHandle {
    task: Option<JoinHandle<()>>,
}

impl PurgerHandle {
    /// Whether a purger runs at all (`retention_days` is not 0).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|task| !task.is_finished())
    }
}

impl Drop for PurgerHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Starts purging `storage` of sessions not updated for `retention_days` days, at
/// once and then every [`PURGE_INTERVAL`]; 0 days keeps everything (the handle
/// then runs nothing). Must be called inside a tokio runtime.
pub fn spawn_purger(storage: Arc<dyn Storage>, retention_days: u32) -> PurgerHandle {
    if retention_days == 0 {
        return PurgerHandle { task: None };
    }
    spawn_purger_every(storage, DAY * retention_days, PURGE_INTERVAL)
}

fn spawn_purger_every(
    storage: Arc<dyn Storage>,
    retention: Duration,
    interval: Duration,
) -> PurgerHandle {
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        // After a long pause (a suspended machine) one purge catches up on all.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let cutoff = Timestamp::now().minus(retention);
            match storage.purge_older_than(cutoff).await {
                Ok(0) => tracing::debug!(engine = storage.kind(), "no session to purge"),
                Ok(purged) => tracing::info!(
                    engine = storage.kind(),
                    purged,
                    retention_days = retention.as_secs() / DAY.as_secs(),
                    "purged sessions not updated within the retention period"
                ),
                // The next run tries again; an outage is already reported elsewhere.
                Err(error) => tracing::warn!(engine = storage.kind(), %error, "purge failed"),
            }
        }
    });
    PurgerHandle { task: Some(task) }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::storage::{MemoryStorage, SessionRecord};

    async fn session(storage: &dyn Storage) -> Uuid {
        let id = Uuid::new_v4();
        let record = SessionRecord {
            id,
            user_id: None,
            gateway: None,
        };
        storage.create_session(record).await.unwrap();
        id
    }

    async fn exists(storage: &dyn Storage, id: Uuid) -> bool {
        storage.load_session(id, 0).await.unwrap().is_some()
    }

    #[tokio::test]
    async fn the_purger_runs_at_once_and_then_on_every_interval() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let first = session(&*storage).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let purger = spawn_purger_every(
            storage.clone(),
            Duration::from_millis(20),
            Duration::from_millis(50),
        );
        assert!(purger.is_running());
        tokio::time::timeout(Duration::from_secs(5), async {
            while exists(&*storage, first).await {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the first run purges an old session");

        // A session created after the first run is purged by a later one.
        let second = session(&*storage).await;
        tokio::time::timeout(Duration::from_secs(5), async {
            while exists(&*storage, second).await {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("a later run purges it once it is old");
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_purger() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let purger = spawn_purger_every(
            storage.clone(),
            Duration::from_millis(10),
            Duration::from_millis(10),
        );
        drop(purger);
        let id = session(&*storage).await;
        // Many intervals and retention periods later, it is still there.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(exists(&*storage, id).await);
    }

    #[tokio::test]
    async fn zero_days_keeps_everything() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let purger = spawn_purger(storage.clone(), 0);
        assert!(!purger.is_running());
        let purger = spawn_purger(storage, 30);
        assert!(purger.is_running());
    }
}
