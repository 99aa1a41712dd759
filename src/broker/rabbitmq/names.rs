//! The names of the RabbitMQ topology, all derived from `broker.question_queue`.
//!
//! Deriving every name from one setting is what lets deployments and test runs
//! share one RabbitMQ without colliding: a different question queue is a different
//! world. The names are checked once, up front, against AMQP's 255-byte limit on
//! short strings, so that a name too long fails at start rather than on the first
//! reply queue declared.

use lapin::types::ShortString;
use uuid::Uuid;

use super::BrokerError;

/// An AMQP short string holds at most 255 bytes.
const MAX_NAME_BYTES: usize = 255;

/// The names this engine uses, all derived from the question queue's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The work queue (a quorum queue).
    pub questions: String,
    /// Where rejected questions go.
    pub dead_letters: String,
    /// The fanout exchange of cancellations.
    pub cancels: String,
    /// Questions whose gateway went away, for any gateway to store.
    pub orphans: String,
    reply_prefix: String,
}

impl Topology {
    pub fn new(question_queue: &str) -> Result<Self, BrokerError> {
        let topology = Self {
            questions: question_queue.to_owned(),
            dead_letters: format!("{question_queue}.dead"),
            cancels: format!("{question_queue}.cancel"),
            orphans: format!("{question_queue}.orphans"),
            reply_prefix: format!("{question_queue}.reply."),
        };
        let longest = notice_queue(&topology.reply_queue(Uuid::nil()));
        if question_queue.is_empty() || longest.len() > MAX_NAME_BYTES {
            return Err(BrokerError::Unavailable(format!(
                "the question queue name must have 1 to {} bytes",
                MAX_NAME_BYTES - (longest.len() - question_queue.len())
            )));
        }
        Ok(topology)
    }

    /// The name of a gateway's reply queue.
    pub fn reply_queue(&self, gateway: Uuid) -> String {
        format!("{}{}", self.reply_prefix, gateway.simple())
    }
}

/// The queue where the gateway whose reply queue is `reply_queue` hears from other
/// gateways (see [`crate::broker::Notice`]).
pub fn notice_queue(reply_queue: &str) -> String {
    format!("{reply_queue}.notices")
}

/// `name` as an AMQP short string.
pub(super) fn short(name: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(name)
        .map_err(|_| BrokerError::Unavailable(format!("name too long for AMQP: {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_question_queue() {
        let topology = Topology::new("chat").unwrap();
        assert_eq!(topology.questions, "chat");
        assert_eq!(topology.dead_letters, "chat.dead");
        assert_eq!(topology.cancels, "chat.cancel");
        assert_eq!(topology.orphans, "chat.orphans");
        let gateway = Uuid::new_v4();
        let reply_queue = topology.reply_queue(gateway);
        assert_eq!(reply_queue, format!("chat.reply.{}", gateway.simple()));
        assert_eq!(
            notice_queue(&reply_queue),
            format!("chat.reply.{}.notices", gateway.simple())
        );
    }

    #[test]
    fn names_must_fit_in_an_amqp_short_string() {
        assert!(Topology::new("").is_err());
        assert!(Topology::new(&"q".repeat(250)).is_err());
        let longest = MAX_NAME_BYTES - ".reply.".len() - 32 - ".notices".len();
        let topology = Topology::new(&"q".repeat(longest)).unwrap();
        let reply_queue = topology.reply_queue(Uuid::new_v4());
        assert_eq!(notice_queue(&reply_queue).len(), MAX_NAME_BYTES);
        assert!(Topology::new(&"q".repeat(longest + 1)).is_err());
    }
}
