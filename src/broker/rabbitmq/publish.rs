//! Publishing questions, cancellations and answers, each with a publisher confirm
//! and within `broker.publish_timeout_ms`.
//!
//! Questions and cancellations are rare and must not be lost silently, so each
//! publish waits for its confirm: a question refused means the queue is full
//! ([`BrokerError::Full`]). Answer chunks are many and stream at the model's pace,
//! so they are not awaited one by one: [`track_answer_confirms`] checks their
//! confirms off in order, and only a turn's last answer is awaited before its
//! question is acknowledged. Answers are published `mandatory`, so one whose
//! gateway has gone comes back, and the worker's next publish for that turn fails
//! with [`BrokerError::NoSuchReplyQueue`]. Both carry headers that name their turn
//! (see [`super::headers`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::message::BasicReturnMessage;
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation, PublisherConfirm};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::headers::{answer_headers, question_headers};
use super::link::Link;
use super::names::{notice_queue, short};
use super::{Answer, BrokerError, EngineState, Notice, Orphan, Question, unavailable, within};

/// Answer chunks published but not yet confirmed; beyond it, publishing waits.
pub(super) const ANSWERS_IN_FLIGHT: usize = 4096;
/// How long a turn whose answers came back unroutable is remembered.
const UNDELIVERABLE_TTL: Duration = Duration::from_secs(60);
const UNDELIVERABLE_PRUNE_AT: usize = 1024;
const PERSISTENT: u8 = 2;
const TRANSIENT: u8 = 1;
const JSON: &str = "application/json";

/// Publishes a question to the work queue and waits for RabbitMQ to take it.
pub(super) async fn publish_question(
    shared: &EngineState,
    question: Question,
) -> Result<(), BrokerError> {
    let link = shared.current_link()?;
    let body = serde_json::to_vec(&question).map_err(unavailable)?;
    let properties = BasicProperties::default()
        .with_content_type(JSON.into())
        .with_delivery_mode(PERSISTENT)
        .with_reply_to(short(&question.reply_to)?)
        .with_correlation_id(question.turn_id.to_string().into())
        .with_headers(question_headers(&question));
    let queue = short(&shared.topology.questions)?;
    // Mandatory: should the queue be missing, the question comes back instead of
    // vanishing.
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    let confirmation = within(shared.publish_timeout, "publishing a question", async {
        link.questions
            .basic_publish("".into(), queue, options, &body, properties)
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)
    })
    .await?;
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => Err(BrokerError::Unavailable(format!(
            "the question queue {} does not exist",
            shared.topology.questions
        ))),
        // The queue is at `x-max-length` and rejects publishes.
        Confirmation::Nack(_) => Err(BrokerError::Full),
    }
}

/// Hands an orphaned question back, for any gateway to store; waits for RabbitMQ
/// to take it.
pub(super) async fn publish_orphan(
    shared: &EngineState,
    orphan: &Orphan,
) -> Result<(), BrokerError> {
    let link = shared.current_link()?;
    let body = serde_json::to_vec(orphan).map_err(unavailable)?;
    let properties = BasicProperties::default()
        .with_content_type(JSON.into())
        .with_delivery_mode(PERSISTENT)
        .with_correlation_id(orphan.turn_id.to_string().into());
    let queue = short(&shared.topology.orphans)?;
    let confirmation = within(shared.publish_timeout, "handing back an orphan", async {
        link.questions
            .basic_publish(
                "".into(),
                queue,
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)
    })
    .await?;
    if confirmation.is_ack() {
        Ok(())
    } else {
        Err(BrokerError::Unavailable(
            "RabbitMQ refused an orphan".into(),
        ))
    }
}

/// Publishes a turn's cancellation to every subscriber.
pub(super) async fn publish_cancel(shared: &EngineState, turn_id: Uuid) -> Result<(), BrokerError> {
    let link = shared.current_link()?;
    let exchange = short(&shared.topology.cancels)?;
    let body = turn_id.to_string();
    let properties = BasicProperties::default().with_delivery_mode(TRANSIENT);
    within(shared.publish_timeout, "publishing a cancellation", async {
        let confirmation = link
            .questions
            .basic_publish(
                exchange,
                "".into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties,
            )
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        if confirmation.is_ack() {
            Ok(())
        } else {
            Err(BrokerError::Unavailable(
                "RabbitMQ refused the cancellation".into(),
            ))
        }
    })
    .await
}

/// Publishes `notice` to the notice queue of the gateway whose reply queue is
/// `to`, and waits for its confirm: `false` when RabbitMQ returned it (there is no
/// such queue: that gateway is gone).
pub(super) async fn publish_notice(
    shared: &EngineState,
    to: &str,
    notice: &Notice,
) -> Result<bool, BrokerError> {
    let link = shared.current_link()?;
    let body = serde_json::to_vec(notice).map_err(unavailable)?;
    // Tells this notice's return from another's, should lapin attach it to another
    // confirmation.
    let id = Uuid::new_v4().to_string();
    let properties = BasicProperties::default()
        .with_content_type(JSON.into())
        .with_delivery_mode(TRANSIENT)
        .with_correlation_id(id.as_str().into());
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    let queue = short(&notice_queue(to))?;
    let confirmation = within(shared.publish_timeout, "publishing a notice", async {
        link.notices
            .basic_publish("".into(), queue, options, &body, properties)
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)
    })
    .await?;
    match confirmation {
        Confirmation::Ack(Some(returned)) => {
            let returned_id = returned.delivery.properties.correlation_id().as_ref();
            Ok(returned_id.is_none_or(|returned| returned.as_str() != id))
        }
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(true),
        Confirmation::Nack(_) => Err(BrokerError::Unavailable("RabbitMQ refused a notice".into())),
    }
}

/// Publishes one answer to the gateway at `reply_to`; waits for its confirm only
/// when it ends its turn.
pub(super) async fn publish_answer(
    shared: &EngineState,
    reply_to: &str,
    answer: Answer,
) -> Result<(), BrokerError> {
    if shared.undeliverable.take(answer.turn_id, reply_to) {
        return Err(BrokerError::NoSuchReplyQueue(reply_to.to_owned()));
    }
    let link = shared.current_link()?;
    let ends_turn = answer.body.ends_turn();
    publish_answer_on(&link, shared.publish_timeout, reply_to, &answer, ends_turn).await
}

/// Publishes one answer on `link`. With `confirm`, waits for RabbitMQ's
/// confirmation; otherwise hands it to [`track_answer_confirms`].
async fn publish_answer_on(
    link: &Link,
    publish_timeout: Duration,
    reply_to: &str,
    answer: &Answer,
    confirm: bool,
) -> Result<(), BrokerError> {
    let no_such_queue = || BrokerError::NoSuchReplyQueue(reply_to.to_owned());
    let routing_key = ShortString::try_new(reply_to).map_err(|_| no_such_queue())?;
    let body = serde_json::to_vec(answer).map_err(unavailable)?;
    let properties = BasicProperties::default()
        .with_content_type(JSON.into())
        .with_delivery_mode(TRANSIENT)
        .with_correlation_id(answer.turn_id.to_string().into())
        .with_headers(answer_headers(answer));
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    within(publish_timeout, "publishing an answer", async {
        let pending = link
            .answers
            .basic_publish("".into(), routing_key, options, &body, properties)
            .await
            .map_err(unavailable)?;
        if !confirm {
            return link
                .answer_confirms
                .send(pending)
                .await
                .map_err(|_| BrokerError::Unavailable("the connection was lost".into()));
        }
        let confirmation = pending.await.map_err(unavailable)?;
        // NB: a return of another turn's chunk may arrive on this confirmation; it
        // is recorded for that turn.
        match link.undeliverable.note(confirmation) {
            (_, Some((turn, queue))) if turn == answer.turn_id && queue == reply_to => {
                Err(no_such_queue())
            }
            (true, _) => Ok(()),
            (false, _) => Err(BrokerError::Unavailable(
                "RabbitMQ refused the answer".into(),
            )),
        }
    })
    .await
}

/// Answer chunks are published without waiting for their confirmation, so a turn
/// streams at the model's pace rather than one broker round trip per chunk; this
/// task checks the confirmations off in order. A chunk RabbitMQ could not route
/// (the gateway's reply queue is gone) comes back here and marks its turn, so the
/// worker's next publish for that turn fails with
/// [`BrokerError::NoSuchReplyQueue`] and it stops. A chunk lost with a connection is
/// not reported to the worker: the gateway notices the gap in `seq` (or the missing
/// end) and ends the turn with an error. The last answer of a turn is always
/// confirmed before its question is acknowledged.
pub(super) async fn track_answer_confirms(
    mut confirms: mpsc::Receiver<PublisherConfirm>,
    undeliverable: Arc<Undeliverable>,
) {
    while let Some(confirm) = confirms.recv().await {
        match confirm.await {
            Ok(confirmation) => {
                undeliverable.note(confirmation);
            }
            Err(error) => {
                tracing::debug!(%error, "an answer's confirmation was lost with its connection")
            }
        }
    }
}

/// The turn a returned answer belongs to (its `correlation_id`), and the reply
/// queue it was sent to.
fn turn_of(message: &BasicReturnMessage) -> Option<(Uuid, String)> {
    let delivery = &message.delivery;
    let turn = delivery.properties.correlation_id().as_ref()?;
    let turn = Uuid::parse_str(turn.as_str()).ok()?;
    Some((turn, delivery.routing_key.to_string()))
}

/// Turns whose answers RabbitMQ returned as unroutable, by turn id and reply
/// queue: a turn asked again by another gateway (docs/storage.md) is the same turn
/// with another reply queue, and must not stop with the attempt nobody hears.
#[derive(Default)]
pub(super) struct Undeliverable(Mutex<HashMap<(Uuid, String), Instant>>);

impl Undeliverable {
    /// Records what a confirmation tells about routing; returns whether it was a
    /// plain acknowledgement, and the turn (with its reply queue) of any answer it
    /// carried back.
    fn note(&self, confirmation: Confirmation) -> (bool, Option<(Uuid, String)>) {
        let (acked, returned) = match confirmation {
            Confirmation::Ack(returned) => (true, returned),
            Confirmation::Nack(returned) => (false, returned),
            Confirmation::NotRequested => (true, None),
        };
        if !acked {
            tracing::warn!("RabbitMQ refused an answer; its gateway will see a gap");
        }
        // RabbitMQ sends a return before the confirmation of the same message, but
        // lapin may attach it to another confirmation of the same batch: the
        // returned message itself names its turn.
        let turn = returned.as_ref().and_then(turn_of);
        if let Some(turn) = &turn {
            let mut turns = self.0.lock().expect("undeliverable turns");
            if turns.len() >= UNDELIVERABLE_PRUNE_AT {
                turns.retain(|_, since| since.elapsed() < UNDELIVERABLE_TTL);
            }
            turns.insert(turn.clone(), Instant::now());
        }
        (acked, turn)
    }

    fn take(&self, turn: Uuid, reply_to: &str) -> bool {
        self.0
            .lock()
            .expect("undeliverable turns")
            .remove(&(turn, reply_to.to_owned()))
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returned_answers_mark_their_turn() {
        let undeliverable = Undeliverable::default();
        let turn = Uuid::new_v4();
        assert_eq!(undeliverable.note(Confirmation::Ack(None)), (true, None));
        assert_eq!(undeliverable.note(Confirmation::Nack(None)), (false, None));
        assert!(!undeliverable.take(turn, "reply"));
    }
}
