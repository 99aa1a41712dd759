//! `HandoverActor`: hands sessions from one gateway to another (docs/storage.md,
//! "Several gateways").
//!
//! One gateway holds a session at a time; storage names the holder
//! ([`Storage::claim`]). A gateway bringing a stored session back claims it first
//! ([`Claim`]). When another gateway held it, that one is told through the broker
//! ([`Notice::TakeOver`]) and lets go: it closes the socket (1008), drops the
//! session from memory, writes down everything it had queued, and answers
//! [`Notice::Released`]. Only then is the session loaded, so the new holder sees
//! every message the old one stored. A holder that is gone cannot answer, and need
//! not: its notice queue went with it (the notice comes back at once), and it
//! stores nothing more.
//!
//! Turns the old holder was running are not handed over: they stay pending in
//! storage, and the new holder asks them again (see
//! [`crate::storage::TurnOutcome`]). A gateway that died before it could store a
//! question leaves it to the workers: its answer finds no reply queue, and the
//! worker hands the question back as an [`Orphan`]; every gateway adopts such
//! questions, storing them as pending.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::stream::BoxStream;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::registry::{Lookup, SessionRegistry};
use super::session::GiveAway;
use super::stats::Tracked;
use crate::auth::Caller;
use crate::broker::{Adoption, Broker, Notice, Orphan};
use crate::storage::{Recorder, Storage, StorageError};

/// The longest a gateway waits for the previous holder to let go of a session;
/// then it loads the session anyway (what the old holder had not written yet
/// comes in later, but this client is not kept waiting).
const RELEASE_WAIT: Duration = Duration::from_secs(2);
/// The longest a gateway letting go of a session waits for its writes.
const FLUSH_WAIT: Duration = Duration::from_secs(1);
/// How often storing an orphan is tried through a storage outage (waits doubling
/// from 100 ms to 5 s, about a minute in all) before it is given back to RabbitMQ.
const ADOPTION_TRIES: u32 = 16;

pub struct HandoverActor {
    broker: Arc<dyn Broker>,
    storage: Arc<dyn Storage>,
    recorder: Recorder,
    registry: Tracked<SessionRegistry>,
    /// This gateway's reply address: its name as a holder.
    me: String,
    notices: Option<BoxStream<'static, Notice>>,
    /// Claims waiting for a previous holder to let go, by session.
    releases: HashMap<Uuid, Vec<oneshot::Sender<()>>>,
}

impl HandoverActor {
    pub fn new(
        broker: Arc<dyn Broker>,
        storage: Arc<dyn Storage>,
        recorder: Recorder,
        registry: Tracked<SessionRegistry>,
        me: String,
        notices: BoxStream<'static, Notice>,
    ) -> Self {
        Self {
            broker,
            storage,
            recorder,
            registry,
            me,
            notices: Some(notices),
            releases: HashMap::new(),
        }
    }

    /// Lets go of a session another gateway (`by`) took, then tells it so.
    fn let_go(&self, session_id: Uuid, by: String, ctx: &mut Context<Self>) {
        let registry = self.registry.clone();
        let recorder = self.recorder.clone();
        let broker = self.broker.clone();
        ctx.spawn(
            async move {
                if let Ok(Some(session)) = registry.send(Lookup { session_id }).await {
                    // Answered once the session has closed its socket and left.
                    let _ = session.send(GiveAway).await;
                }
                if !recorder.flush(FLUSH_WAIT).await {
                    tracing::warn!(%session_id, "handing a session over before all of it is stored");
                }
                let released = Notice::Released { session_id };
                if let Err(error) = broker.publish_notice(&by, released).await {
                    tracing::warn!(%session_id, %error, "could not say a session was let go");
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for HandoverActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(notices) = self.notices.take() {
            ctx.add_stream(notices);
        }
        let orphans = self.broker.consume_orphans();
        ctx.spawn(orphans.into_actor(self).map(|orphans, _, ctx| match orphans {
            Ok(orphans) => {
                ctx.add_stream(orphans);
            }
            Err(error) => tracing::error!(%error, "cannot take the questions of gateways that went away"),
        }));
    }
}

/// Stores the question of a gateway that went away, as pending.
impl StreamHandler<Adoption> for HandoverActor {
    fn handle(&mut self, adoption: Adoption, ctx: &mut Self::Context) {
        let storage = self.storage.clone();
        ctx.spawn(adopt(storage, adoption).into_actor(self));
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

async fn adopt(storage: Arc<dyn Storage>, adoption: Adoption) {
    let Orphan {
        session_id,
        turn_id,
        text,
    } = adoption.orphan.clone();
    let mut wait = Duration::from_millis(100);
    for _ in 0..ADOPTION_TRIES {
        match storage
            .adopt_question(session_id, turn_id, text.clone())
            .await
        {
            Ok(()) => {
                tracing::info!(%session_id, %turn_id, "stored the question of a gateway that went away");
                let _ = adoption.ack().await;
                return;
            }
            Err(StorageError::Unavailable(_)) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                // Not an outage: storing it again would fail the same way.
                tracing::error!(%session_id, %turn_id, %error, "could not store the question of a gateway that went away");
                let _ = adoption.ack().await;
                return;
            }
        }
    }
    let _ = adoption.requeue().await;
}

impl StreamHandler<Notice> for HandoverActor {
    fn handle(&mut self, notice: Notice, ctx: &mut Self::Context) {
        match notice {
            Notice::TakeOver { session_id, by } => {
                tracing::info!(%session_id, "another gateway took a session over");
                self.let_go(session_id, by, ctx);
            }
            Notice::Released { session_id } => {
                for claim in self.releases.remove(&session_id).unwrap_or_default() {
                    let _ = claim.send(());
                }
            }
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

/// Makes this gateway the holder of a stored session; answers once the session may
/// be loaded (whoever held it let go, or could not be waited for).
/// [`StorageError::NotFound`] when there is no such session, or when it is not
/// `caller`'s to use.
#[derive(Message)]
#[rtype(result = "Result<(), StorageError>")]
pub struct Claim {
    pub session_id: Uuid,
    pub caller: Caller,
}

impl Handler<Claim> for HandoverActor {
    type Result = ResponseActFuture<Self, Result<(), StorageError>>;

    fn handle(&mut self, claim: Claim, _: &mut Self::Context) -> Self::Result {
        let Claim { session_id, caller } = claim;
        // Waiting before asking, so that no answer can come before it is awaited.
        let (waiter, released) = oneshot::channel();
        self.releases.entry(session_id).or_default().push(waiter);
        let storage = self.storage.clone();
        let broker = self.broker.clone();
        let me = self.me.clone();
        let claim = async move {
            // Before claiming: a claim takes the session from the gateway holding
            // it, closing its owner's socket. The owner is written when the session
            // is created and never changes, so it cannot change between the two.
            if caller != Caller::Anyone {
                let stored = storage.load_session(session_id, 0).await?;
                let owner = stored.as_ref().and_then(|s| s.record.user_id.as_deref());
                if stored.is_none() || !caller.may_use(owner) {
                    return Err(StorageError::NotFound);
                }
            }
            let Some(holder) = storage.claim(session_id, me.clone()).await? else {
                return Ok(());
            };
            let take_over = Notice::TakeOver { session_id, by: me };
            match broker.publish_notice(&holder, take_over).await {
                Ok(true) => {
                    if tokio::time::timeout(RELEASE_WAIT, released).await.is_err() {
                        tracing::warn!(%session_id, "the gateway that held a session did not let go in time");
                    }
                }
                // Its holder is gone: nothing of it can come any more.
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%session_id, %error, "could not tell a session's holder it was taken over");
                }
            }
            Ok(())
        };
        Box::pin(claim.into_actor(self).map(move |result, actor, _| {
            if let Some(waiters) = actor.releases.get_mut(&session_id) {
                waiters.retain(|waiter| !waiter.is_closed());
                if waiters.is_empty() {
                    actor.releases.remove(&session_id);
                }
            }
            result
        }))
    }
}

#[cfg(test)]
mod tests;
