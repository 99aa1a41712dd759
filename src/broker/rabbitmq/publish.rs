//! Publishing questions, cancellations and answers, each with a publisher confirm
//! and within `broker.publish_timeout_ms`.
//!
//! Questions and cancellations are rare and must not be lost silently, so each
//! publish waits for its confirm: a question refused means the queue is full
//! ([`BrokerError::Full`]); questions carry headers that name their turn (see
//! [`super::headers`]). Answers are many and stream at the model's pace: they are
//! joined per gateway into messages ([`super::answer_batches`]) whose confirms
//! [`track_answer_confirms`] checks off in order, and only a turn's last answer is
//! awaited before its question is acknowledged. Answers are published `mandatory`,
//! so those whose gateway has gone come back, and the worker's next publish for
//! such a turn fails with [`BrokerError::NoSuchReplyQueue`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::message::BasicReturnMessage;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Confirmation, PublisherConfirm};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::answer_batches::BATCH_TYPE;
use super::headers::question_headers;
use super::names::{notice_queue, short};
use super::{Answer, BrokerError, EngineState, Notice, Orphan, Question, unavailable, within};

/// Answer messages published but not yet confirmed; beyond it, publishing waits.
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

/// Hands one answer to the link's publisher for the gateway at `reply_to` (see
/// [`super::answer_batches`]); when it ends its turn, waits for its confirm.
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
    within(shared.publish_timeout, "publishing an answer", async {
        let confirmed = link.answers.hand_over(reply_to, &answer, ends_turn).await?;
        match confirmed {
            Some(confirmed) => confirmed.await.unwrap_or_else(|_| {
                Err(BrokerError::Unavailable("the connection was lost".into()))
            }),
            None => Ok(()),
        }
    })
    .await
}

/// Answer chunks are published without waiting for their confirmation, so a turn
/// streams at the model's pace rather than one broker round trip per chunk; this
/// task checks the confirmations off in order. A message RabbitMQ could not route
/// (the gateway's reply queue is gone) comes back here and marks its turns, so the
/// worker's next publish for such a turn fails with
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

/// The turns a returned message of answers belongs to, each with the reply queue it
/// was sent to: those its body names (a batch), or its `correlation_id`.
fn turns_of(message: &BasicReturnMessage) -> Vec<(Uuid, String)> {
    #[derive(serde::Deserialize)]
    struct TurnOf {
        turn_id: Uuid,
    }
    let delivery = &message.delivery;
    let queue = delivery.routing_key.to_string();
    let is_batch = delivery
        .properties
        .kind()
        .as_ref()
        .is_some_and(|kind| kind.as_str() == BATCH_TYPE);
    let turns = match is_batch {
        true => serde_json::from_slice::<Vec<TurnOf>>(&delivery.data)
            .map(|answers| answers.into_iter().map(|answer| answer.turn_id).collect())
            .unwrap_or_default(),
        false => delivery
            .properties
            .correlation_id()
            .as_ref()
            .and_then(|turn| Uuid::parse_str(turn.as_str()).ok())
            .into_iter()
            .collect::<Vec<_>>(),
    };
    let mut turns: Vec<_> = turns
        .into_iter()
        .map(|turn| (turn, queue.clone()))
        .collect();
    // A batch names a turn once per answer; each turn is reported once.
    turns.sort_unstable();
    turns.dedup();
    turns
}

/// Turns whose answers RabbitMQ returned as unroutable, by turn id and reply
/// queue: a turn asked again by another gateway (docs/storage.md) is the same turn
/// with another reply queue, and must not stop with the attempt nobody hears.
#[derive(Default)]
pub(super) struct Undeliverable(Mutex<HashMap<(Uuid, String), Instant>>);

impl Undeliverable {
    /// Records what a confirmation tells about routing; returns whether it was a
    /// plain acknowledgement, and the turns (with their reply queue) of any answers
    /// it carried back.
    pub(super) fn note(&self, confirmation: Confirmation) -> (bool, Vec<(Uuid, String)>) {
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
        // returned message itself names its turns.
        let returned = returned.as_ref().map(turns_of).unwrap_or_default();
        if !returned.is_empty() {
            let mut turns = self.0.lock().expect("undeliverable turns");
            if turns.len() >= UNDELIVERABLE_PRUNE_AT {
                turns.retain(|_, since| since.elapsed() < UNDELIVERABLE_TTL);
            }
            let now = Instant::now();
            turns.extend(returned.iter().map(|turn| (turn.clone(), now)));
        }
        (acked, returned)
    }

    pub(super) fn take(&self, turn: Uuid, reply_to: &str) -> bool {
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
        assert_eq!(undeliverable.note(Confirmation::Ack(None)), (true, vec![]));
        assert_eq!(
            undeliverable.note(Confirmation::Nack(None)),
            (false, vec![])
        );
        assert!(!undeliverable.take(turn, "reply"));

        let other = Uuid::new_v4();
        let body = serde_json::json!([
            {"session_id": Uuid::nil(), "turn_id": turn, "attempt": 1, "body": {"type": "chunk", "seq": 0, "text": "a"}},
            {"session_id": Uuid::nil(), "turn_id": other, "attempt": 1, "body": {"type": "done", "finish_reason": "stop"}},
            {"session_id": Uuid::nil(), "turn_id": turn, "attempt": 1, "body": {"type": "chunk", "seq": 1, "text": "b"}},
        ]);
        let returned = returned_batch("reply", serde_json::to_vec(&body).unwrap());
        let (acked, turns) = undeliverable.note(Confirmation::Ack(Some(returned)));
        assert!(acked);
        let mut expected = [(turn, "reply".to_owned()), (other, "reply".to_owned())];
        expected.sort_unstable();
        assert_eq!(turns, expected);
        assert!(undeliverable.take(turn, "reply"));
        assert!(undeliverable.take(other, "reply"));
        assert!(!undeliverable.take(other, "reply"), "taken once");
    }

    fn returned_batch(queue: &str, data: Vec<u8>) -> BasicReturnMessage {
        let mut delivery = lapin::message::Delivery::mock(0, "".into(), queue.into(), false, data);
        delivery.properties = BasicProperties::default().with_type(BATCH_TYPE.into());
        BasicReturnMessage {
            delivery,
            reply_code: 312,
            reply_text: "NO_ROUTE".into(),
        }
    }
}
