//! Claims and ownership: a claim for a user who does not own the session takes
//! nothing from the gateway holding it.

use std::time::Duration;

use futures_util::StreamExt;

use super::*;
use crate::actors::stats::ActorStats;
use crate::broker::embedded::EmbeddedBroker;
use crate::storage::{MemoryStorage, SessionRecord};

/// A gateway's handover actor, and another gateway (only its reply queue) that
/// holds alice's session.
struct TwoGateways {
    storage: Arc<dyn Storage>,
    broker: Arc<dyn Broker>,
    handover: Addr<HandoverActor>,
    me: String,
    holder: String,
    holder_notices: BoxStream<'static, Notice>,
    session_id: Uuid,
}

impl TwoGateways {
    async fn start() -> Self {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new(16));
        let holder = broker.open_reply_queue().await.unwrap();
        let session_id = Uuid::new_v4();
        let record = SessionRecord {
            id: session_id,
            user_id: Some("alice".into()),
            gateway: Some(holder.address.clone()),
        };
        storage.create_session(record).await.unwrap();
        let ours = broker.open_reply_queue().await.unwrap();
        let registry = SessionRegistry::new(Duration::from_secs(60), 16, usize::MAX).start();
        let registry = Tracked::new(registry, ActorStats::new("session_registry", "0"));
        let handover = HandoverActor::new(
            broker.clone(),
            storage.clone(),
            Recorder::start(storage.clone()),
            registry,
            ours.address.clone(),
            ours.notices,
        )
        .start();
        Self {
            storage,
            broker,
            handover,
            me: ours.address,
            holder: holder.address,
            holder_notices: holder.notices,
            session_id,
        }
    }

    async fn claim(&self, caller: Caller) -> Result<(), StorageError> {
        let session_id = self.session_id;
        self.handover
            .send(Claim { session_id, caller })
            .await
            .unwrap()
    }

    async fn stored_holder(&self) -> Option<String> {
        let stored = self.storage.load_session(self.session_id, 0).await;
        stored.unwrap().unwrap().record.gateway
    }
}

#[actix_web::test]
async fn another_users_claim_takes_nothing() {
    let mut gateways = TwoGateways::start().await;
    let bob = Caller::User("bob".into());
    assert_eq!(gateways.claim(bob).await, Err(StorageError::NotFound));
    assert_eq!(
        gateways.stored_holder().await,
        Some(gateways.holder.clone())
    );
    let notice = tokio::time::timeout(Duration::from_millis(200), gateways.holder_notices.next());
    assert!(notice.await.is_err(), "the holder was told to let go");
}

#[actix_web::test]
async fn the_owners_claim_takes_the_session_over() {
    let mut gateways = TwoGateways::start().await;
    let pending = futures_util::stream::pending().boxed();
    let mut notices = std::mem::replace(&mut gateways.holder_notices, pending);
    let claim = gateways.claim(Caller::User("alice".into()));
    let holder_lets_go = async {
        let notice = notices.next().await;
        let Some(Notice::TakeOver { session_id, by }) = notice else {
            panic!("expected a take-over notice, got {notice:?}");
        };
        assert_eq!((session_id, &by), (gateways.session_id, &gateways.me));
        let released = Notice::Released { session_id };
        gateways.broker.publish_notice(&by, released).await.unwrap();
    };
    let (claimed, ()) = tokio::join!(claim, holder_lets_go);
    assert_eq!(claimed, Ok(()));
    assert_eq!(gateways.stored_holder().await, Some(gateways.me.clone()));
}

#[actix_web::test]
async fn without_authentication_anyone_may_claim() {
    let mut gateways = TwoGateways::start().await;
    // The holder has gone away: nobody is waited for.
    gateways.holder_notices = futures_util::stream::pending().boxed();
    assert_eq!(gateways.claim(Caller::Anyone).await, Ok(()));
    assert_eq!(gateways.stored_holder().await, Some(gateways.me.clone()));
}
