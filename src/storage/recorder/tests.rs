use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::*;
use crate::storage::{
    MemoryStorage, SessionRecord, StoredMessage, StoredSession, Timestamp, TurnOutcome,
};
use uuid::Uuid;

/// Memory storage that can be made unreachable, and notes the size of each
/// batch it is handed.
struct Flaky {
    inner: MemoryStorage,
    down: AtomicBool,
    batches: Mutex<Vec<usize>>,
}

impl Flaky {
    fn new(down: bool) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryStorage::new(),
            down: AtomicBool::new(down),
            batches: Mutex::default(),
        })
    }

    fn gate(&self) -> Result<(), StorageError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StorageError::Unavailable("down for the test".into()))
        } else {
            Ok(())
        }
    }
}

impl Storage for Flaky {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    fn create_session(&self, s: SessionRecord) -> BoxFuture<'_, Result<(), StorageError>> {
        async move {
            self.gate()?;
            self.inner.create_session(s).await
        }
        .boxed()
    }
    fn append_message(
        &self,
        id: Uuid,
        m: StoredMessage,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        async move {
            self.gate()?;
            self.inner.append_message(id, m).await
        }
        .boxed()
    }
    fn adopt_question(
        &self,
        id: Uuid,
        turn: Uuid,
        text: String,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        self.inner.adopt_question(id, turn, text)
    }
    fn end_turn(
        &self,
        id: Uuid,
        turn: Uuid,
        outcome: TurnOutcome,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        async move {
            self.gate()?;
            self.inner.end_turn(id, turn, outcome).await
        }
        .boxed()
    }
    fn load_session(
        &self,
        id: Uuid,
        latest: usize,
    ) -> BoxFuture<'_, Result<Option<StoredSession>, StorageError>> {
        self.inner.load_session(id, latest)
    }
    fn claim(&self, id: Uuid, g: String) -> BoxFuture<'_, Result<Option<String>, StorageError>> {
        self.inner.claim(id, g)
    }
    fn purge_older_than(&self, c: Timestamp) -> BoxFuture<'_, Result<u64, StorageError>> {
        self.inner.purge_older_than(c)
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        async move { self.gate() }.boxed()
    }
    fn apply<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<(), StorageError>> {
        self.batches.lock().unwrap().push(writes.len());
        async move {
            self.gate()?;
            self.inner.apply(writes).await
        }
        .boxed()
    }
}

fn session(id: Uuid) -> Write {
    Write::Session(SessionRecord {
        id,
        user_id: None,
        gateway: None,
    })
}

/// Records a session and one turn of it: "q", then "a".
fn record_turn(recorder: &Recorder, id: Uuid, turn: Uuid) {
    recorder.record(session(id));
    recorder.record(Write::Message(id, StoredMessage::user(turn, "q")));
    recorder.record(Write::Message(id, StoredMessage::assistant(turn, "a")));
}

async fn stored(storage: &dyn Storage, id: Uuid) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let loaded = storage.load_session(id, 10).await.unwrap();
        let messages: Vec<String> = loaded
            .map(|s| s.messages.into_iter().map(|m| m.content).collect())
            .unwrap_or_default();
        if messages.len() == 2 || tokio::time::Instant::now() > deadline {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_lone_write_goes_at_once_and_a_busy_moment_shares_one_batch() {
    let storage = Flaky::new(false);
    let recorder = Recorder::start(storage.clone());
    let id = Uuid::new_v4();
    let start = Instant::now();
    recorder.record(session(id));
    assert!(recorder.flush(Duration::from_secs(1)).await);
    assert_eq!(start.elapsed(), Duration::ZERO, "nothing to wait for");

    // Right after a batch: whatever arrives until the interval is over waits,
    // and goes together.
    for _ in 0..10 {
        let question = StoredMessage::user(Uuid::new_v4(), "q");
        recorder.record(Write::Message(id, question));
        tokio::task::yield_now().await;
    }
    assert!(recorder.flush(Duration::from_secs(1)).await);
    assert_eq!(*storage.batches.lock().unwrap(), [1, 10]);
    assert_eq!(start.elapsed(), BATCH_INTERVAL);
}

#[tokio::test]
async fn writes_are_stored_in_order() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let recorder = Recorder::start(storage.clone());
    let (id, turn) = (Uuid::new_v4(), Uuid::new_v4());
    record_turn(&recorder, id, turn);
    assert_eq!(stored(&*storage, id).await, ["q", "a"]);
    assert_eq!(recorder.problem(), None);
}

#[tokio::test]
async fn an_outage_is_reported_and_nothing_is_lost() {
    let flaky = Flaky::new(true);
    let recorder = Recorder::start(flaky.clone());
    let (id, turn) = (Uuid::new_v4(), Uuid::new_v4());
    record_turn(&recorder, id, turn);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while recorder.problem().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the outage shows");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(recorder.problem().unwrap().contains("down for the test"));

    flaky.down.store(false, Ordering::SeqCst);
    assert_eq!(stored(&flaky.inner, id).await, ["q", "a"]);
    assert_eq!(recorder.problem(), None, "the recovery shows");
}

#[tokio::test(start_paused = true)]
async fn an_idle_recorder_notices_an_outage_and_its_end() {
    let flaky = Flaky::new(false);
    let recorder = Recorder::start(flaky.clone());
    flaky.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(PING_INTERVAL * 2).await;
    assert!(recorder.problem().is_some());
    flaky.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(PING_INTERVAL * 2).await;
    assert_eq!(recorder.problem(), None);
}

#[tokio::test]
async fn a_flush_waits_for_the_writes_before_it() {
    let flaky = Flaky::new(true);
    let recorder = Recorder::start(flaky.clone());
    let (id, turn) = (Uuid::new_v4(), Uuid::new_v4());
    record_turn(&recorder, id, turn);
    assert!(
        !recorder.flush(Duration::from_millis(200)).await,
        "the database is down"
    );
    flaky.down.store(false, Ordering::SeqCst);
    assert!(recorder.flush(Duration::from_secs(10)).await);
    let stored = flaky.inner.load_session(id, 10).await.unwrap().unwrap();
    assert_eq!(
        stored.messages.len(),
        2,
        "everything before the flush is stored"
    );
}

#[tokio::test]
async fn a_refused_write_is_dropped_and_the_rest_go_on() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let recorder = Recorder::start(storage.clone());
    let (gone, id, turn) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    // A message for a session that does not exist: `NotFound`, not an outage.
    recorder.record(Write::Message(gone, StoredMessage::user(turn, "lost")));
    record_turn(&recorder, id, turn);
    assert_eq!(stored(&*storage, id).await, ["q", "a"]);
    assert_eq!(recorder.problem(), None);
}
