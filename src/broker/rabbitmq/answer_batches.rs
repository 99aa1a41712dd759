//! Answers on their way to gateways, joined per gateway into one message.
//!
//! A model that paces its words 1 ms apart makes one chunk per word per turn, and
//! one RabbitMQ message each would make the broker's cost per message the limit of
//! the whole system. So workers hand each answer, already encoded, to the link's
//! one publishing task; it takes every answer waiting at that moment, groups them
//! by gateway in the order they came, and publishes one message per gateway.
//! Answers ready together travel together, and none waits for company: under light
//! load each message holds one answer, under heavy load many.
//!
//! A message holds a JSON array of answers and has the AMQP `type` [`BATCH_TYPE`];
//! a gateway also reads a lone answer without that type. A turn's answers keep
//! their order: one task publishes them, on one channel, in the order its worker
//! handed them over. A turn's last answer is handed over with a promise, kept once
//! RabbitMQ has confirmed the message it went in (or returned it: the gateway is
//! gone); the other answers' confirmations are checked off by
//! [`track_answer_confirms`].
//!
//! [`track_answer_confirms`]: super::publish::track_answer_confirms

use std::sync::Arc;

use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::publish::Undeliverable;
use super::{BrokerError, unavailable};
use crate::broker::Answer;

/// The AMQP `type` of a message that holds a JSON array of answers.
pub(super) const BATCH_TYPE: &str = "answers";
/// Answers handed over and not yet published; beyond it, handing over waits.
const WAITING_ANSWERS: usize = 4096;
/// At most this many answers are taken for one round of messages…
const ANSWERS_PER_ROUND: usize = 1024;
/// …and a message stops growing past this many bytes (a chunk is at most 16 KiB):
/// what a gateway holds unread is bounded in messages.
const MESSAGE_BYTES: usize = 64 * 1024;
const TRANSIENT: u8 = 1;

/// What a turn's last answer waits for: whether RabbitMQ took its message.
pub(super) type Confirmed = oneshot::Receiver<Result<(), BrokerError>>;
/// The other end of [`Confirmed`].
type Promise = oneshot::Sender<Result<(), BrokerError>>;

/// The handing-over end of a link's answer publisher.
pub(super) struct AnswerBatches {
    waiting: mpsc::Sender<Outgoing>,
}

struct Outgoing {
    reply_to: ShortString,
    turn_id: Uuid,
    encoded: Vec<u8>,
    /// For a turn's last answer: told how its message fared.
    confirmed: Option<Promise>,
}

impl AnswerBatches {
    /// Starts publishing on `channel` (which has publisher confirms on); answers'
    /// confirmations go to `confirms`, returns are noted in `undeliverable`.
    pub(super) fn start(
        channel: Channel,
        confirms: mpsc::Sender<PublisherConfirm>,
        undeliverable: Arc<Undeliverable>,
    ) -> Self {
        let (waiting, answers) = mpsc::channel(WAITING_ANSWERS);
        let publisher = Publisher {
            channel,
            confirms,
            undeliverable,
        };
        tokio::spawn(publisher.run(answers));
        Self { waiting }
    }

    /// Hands `answer` over for the gateway at `reply_to`. With `confirm`, the
    /// answer's [`Confirmed`] tells when RabbitMQ took it.
    pub(super) async fn hand_over(
        &self,
        reply_to: &str,
        answer: &Answer,
        confirm: bool,
    ) -> Result<Option<Confirmed>, BrokerError> {
        let reply_to = ShortString::try_new(reply_to)
            .map_err(|_| BrokerError::NoSuchReplyQueue(reply_to.to_owned()))?;
        let encoded = serde_json::to_vec(answer).map_err(unavailable)?;
        let (confirmed, outcome) = match confirm {
            true => {
                let (sender, receiver) = oneshot::channel();
                (Some(sender), Some(receiver))
            }
            false => (None, None),
        };
        let outgoing = Outgoing {
            reply_to,
            turn_id: answer.turn_id,
            encoded,
            confirmed,
        };
        self.waiting
            .send(outgoing)
            .await
            .map_err(|_| BrokerError::Unavailable("the connection was lost".into()))?;
        Ok(outcome)
    }
}

struct Publisher {
    channel: Channel,
    confirms: mpsc::Sender<PublisherConfirm>,
    undeliverable: Arc<Undeliverable>,
}

impl Publisher {
    /// Publishes until the link is dropped (every sender with it).
    async fn run(self, mut answers: mpsc::Receiver<Outgoing>) {
        let mut round = Vec::with_capacity(ANSWERS_PER_ROUND);
        while answers.recv_many(&mut round, ANSWERS_PER_ROUND).await > 0 {
            for message in by_gateway(std::mem::take(&mut round)) {
                self.publish(message).await;
            }
        }
    }

    async fn publish(&self, message: Message) {
        let Message {
            reply_to,
            answers,
            body,
        } = message;
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_type(BATCH_TYPE.into())
            .with_delivery_mode(TRANSIENT);
        // Mandatory: should the gateway be gone, the message comes back and its
        // turns stop (see `Undeliverable`).
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let published = self
            .channel
            .basic_publish("".into(), reply_to.clone(), options, &body, properties)
            .await;
        let waiting: Vec<_> = answers
            .into_iter()
            .filter_map(|(turn_id, confirmed)| Some((turn_id, confirmed?)))
            .collect();
        let pending = match published {
            Ok(pending) => pending,
            Err(error) => {
                // The others are lost with the connection: their gateway sees the gap.
                let error = unavailable(error);
                for (_, confirmed) in waiting {
                    let _ = confirmed.send(Err(error.clone()));
                }
                return;
            }
        };
        if waiting.is_empty() {
            // Full when confirmations lag: publishing waits, and so do the workers.
            let _ = self.confirms.send(pending).await;
            return;
        }
        let undeliverable = self.undeliverable.clone();
        let reply_to = reply_to.to_string();
        tokio::spawn(async move {
            let confirmation = pending.await.map_err(unavailable);
            tell_waiting(confirmation, waiting, &reply_to, &undeliverable);
        });
    }
}

/// Tells each turn waiting on a message how it fared: RabbitMQ took it, refused
/// it, or returned that turn's answers (its gateway is gone).
fn tell_waiting(
    confirmation: Result<Confirmation, BrokerError>,
    waiting: Vec<(Uuid, Promise)>,
    reply_to: &str,
    undeliverable: &Undeliverable,
) {
    let (acked, returned) = match confirmation {
        Ok(confirmation) => undeliverable.note(confirmation),
        Err(error) => {
            for (_, confirmed) in waiting {
                let _ = confirmed.send(Err(error.clone()));
            }
            return;
        }
    };
    for (turn_id, confirmed) in waiting {
        // NB: lapin may attach another message's return to this confirmation; only
        // a return that names this turn and gateway concerns it.
        let result = if returned.contains(&(turn_id, reply_to.to_owned())) {
            Err(BrokerError::NoSuchReplyQueue(reply_to.to_owned()))
        } else if acked {
            Ok(())
        } else {
            Err(BrokerError::Unavailable(
                "RabbitMQ refused the answer".into(),
            ))
        };
        let _ = confirmed.send(result);
    }
}

/// One message to publish: a gateway's answers of one round, in order.
struct Message {
    reply_to: ShortString,
    /// Each answer's turn, with the promise of a turn's last answer.
    answers: Vec<(Uuid, Option<Promise>)>,
    /// The JSON array of the answers.
    body: Vec<u8>,
}

impl Message {
    fn new(reply_to: ShortString) -> Self {
        Self {
            reply_to,
            answers: Vec::new(),
            body: b"[".to_vec(),
        }
    }

    fn add(&mut self, outgoing: Outgoing) {
        if !self.answers.is_empty() {
            self.body.push(b',');
        }
        self.body.extend_from_slice(&outgoing.encoded);
        self.answers.push((outgoing.turn_id, outgoing.confirmed));
    }

    fn is_full(&self) -> bool {
        self.body.len() >= MESSAGE_BYTES
    }

    fn finish(mut self) -> Self {
        self.body.push(b']');
        self
    }
}

/// Groups a round of answers into messages, one per gateway (more when one grows
/// past [`MESSAGE_BYTES`]), each keeping the order the answers came in.
fn by_gateway(round: Vec<Outgoing>) -> Vec<Message> {
    let mut open: Vec<Message> = Vec::new();
    let mut done = Vec::new();
    for outgoing in round {
        let index = match open.iter().position(|m| m.reply_to == outgoing.reply_to) {
            Some(index) => index,
            None => {
                open.push(Message::new(outgoing.reply_to.clone()));
                open.len() - 1
            }
        };
        open[index].add(outgoing);
        if open[index].is_full() {
            // Published before whatever of its gateway follows in this round.
            let full = open.remove(index);
            done.push(full.finish());
        }
    }
    done.extend(open.into_iter().map(Message::finish));
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::AnswerBody;

    fn outgoing(reply_to: &str, turn_id: Uuid, text: &str) -> Outgoing {
        let answer = Answer {
            session_id: Uuid::nil(),
            turn_id,
            attempt: 1,
            body: AnswerBody::Chunk {
                seq: 0,
                text: text.into(),
            },
        };
        Outgoing {
            reply_to: reply_to.into(),
            turn_id,
            encoded: serde_json::to_vec(&answer).unwrap(),
            confirmed: None,
        }
    }

    fn texts(message: &Message) -> Vec<String> {
        let answers: Vec<Answer> = serde_json::from_slice(&message.body).unwrap();
        answers
            .into_iter()
            .map(|answer| match answer.body {
                AnswerBody::Chunk { text, .. } => text,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_round_becomes_one_message_per_gateway_in_order() {
        let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
        let round = vec![
            outgoing("a", one, "a1"),
            outgoing("b", two, "b1"),
            outgoing("a", one, "a2"),
            outgoing("a", two, "a3"),
        ];
        let messages = by_gateway(round);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].reply_to.as_str(), "a");
        assert_eq!(texts(&messages[0]), ["a1", "a2", "a3"]);
        assert_eq!(texts(&messages[1]), ["b1"]);
    }

    #[test]
    fn a_message_stops_growing_at_its_size() {
        let turn = Uuid::new_v4();
        let big = "x".repeat(MESSAGE_BYTES / 2);
        let round = (0..5).map(|_| outgoing("a", turn, &big)).collect();
        let messages = by_gateway(round);
        let sizes: Vec<usize> = messages.iter().map(|m| texts(m).len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert!(messages.iter().all(|m| m.reply_to.as_str() == "a"));
    }

    #[test]
    fn a_returned_turn_is_told_its_gateway_is_gone_and_the_others_are_confirmed() {
        let undeliverable = Undeliverable::default();
        let (gone, fine) = (Uuid::new_v4(), Uuid::new_v4());
        let mut returned = by_gateway(vec![outgoing("a", gone, "lost")]).remove(0);
        let data = std::mem::take(&mut returned.body);
        let mut delivery = lapin::message::Delivery::mock(0, "".into(), "a".into(), false, data);
        delivery.properties = BasicProperties::default().with_type(BATCH_TYPE.into());
        let returned = lapin::message::BasicReturnMessage {
            delivery,
            reply_code: 312,
            reply_text: "NO_ROUTE".into(),
        };
        let (gone_sender, mut gone_told) = oneshot::channel();
        let (fine_sender, mut fine_told) = oneshot::channel();
        let waiting = vec![(gone, gone_sender), (fine, fine_sender)];
        let confirmation = Confirmation::Ack(Some(returned));
        tell_waiting(Ok(confirmation), waiting, "a", &undeliverable);
        assert_eq!(
            gone_told.try_recv().unwrap(),
            Err(BrokerError::NoSuchReplyQueue("a".into()))
        );
        assert_eq!(fine_told.try_recv().unwrap(), Ok(()));

        let (sender, mut told) = oneshot::channel();
        tell_waiting(
            Ok(Confirmation::Nack(None)),
            vec![(fine, sender)],
            "a",
            &undeliverable,
        );
        assert!(matches!(
            told.try_recv().unwrap(),
            Err(BrokerError::Unavailable(_))
        ));
    }
}
