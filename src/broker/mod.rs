//! Moving questions to workers and answers back to the gateway that asked.
//!
//! [`Broker`] is the one interface; [`embedded::EmbeddedBroker`] (tokio channels,
//! one process) is its first engine. The broker knows neither routes nor agents:
//! it carries [`Question`]s, [`Answer`]s and cancellations, tagged with the session
//! and turn they belong to.

pub mod embedded;
pub mod rabbitmq;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::conversation::{ChatError, ChatMessage, FinishReason, TurnEvent};

/// A user's message on its way to a worker, with what the agent needs to answer it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub session_id: Uuid,
    pub turn_id: Uuid,
    /// The reply address of the gateway that asked (its reply queue).
    pub reply_to: String,
    /// The session's earlier turns, oldest first.
    pub history: Vec<ChatMessage>,
    pub text: String,
    /// The tools the turn may use (see [`crate::agent::AgentRequest::tools`]);
    /// absent from a question means all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
}

/// One piece of a turn's outcome, on its way back to the gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub session_id: Uuid,
    pub turn_id: Uuid,
    /// Which delivery of the question produced this answer (1 for the first). A
    /// higher number means the turn restarted elsewhere and earlier chunks are void.
    pub attempt: u32,
    pub body: AnswerBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnswerBody {
    /// Answer text. `seq` numbers every answer of one attempt that is not its end,
    /// chunks and events alike, from 0, so the gateway sees a lost or repeated one
    /// of either kind. (The `seq` of the WebSocket's chunk frames counts chunks only.)
    Chunk {
        seq: u64,
        text: String,
    },
    /// A tool at work, the passages found, or reasoning; numbered like chunks.
    Event {
        seq: u64,
        event: TurnEvent,
    },
    Done {
        finish_reason: FinishReason,
    },
    Error(ChatError),
}

impl AnswerBody {
    /// Whether this is the last answer of its turn.
    pub fn ends_turn(&self) -> bool {
        !matches!(self, AnswerBody::Chunk { .. } | AnswerBody::Event { .. })
    }
}

/// A question handed to a worker. Settle it once: [`Delivery::ack`] when its turn
/// has ended (whatever the outcome), [`Delivery::requeue`] to give it to another
/// worker (at shutdown), [`Delivery::reject`] to refuse it for good (a poison
/// question; the broker dead-letters it). Dropping it unsettled — its worker died —
/// rejects it where the engine can.
pub struct Delivery {
    pub question: Question,
    /// 1 on first delivery, higher when the broker redelivers it.
    pub attempt: u32,
    /// The trace the question's publisher sent along, so that a turn's log lines
    /// join up across processes. `None` where the engine carries none (the
    /// embedded one) or the message came without it.
    pub trace: Option<TraceContext>,
    settle: Box<dyn Settle>,
}

impl Delivery {
    pub fn new(question: Question, attempt: u32, settle: Box<dyn Settle>) -> Self {
        Self {
            question,
            attempt,
            trace: None,
            settle,
        }
    }

    /// The same delivery, with the trace context its message carried.
    pub fn with_trace(mut self, trace: Option<TraceContext>) -> Self {
        self.trace = trace;
        self
    }

    pub fn ack(self) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.settle.ack()
    }

    pub fn requeue(self) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.settle.requeue()
    }

    pub fn reject(self) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.settle.reject()
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("turn_id", &self.question.turn_id)
            .field("attempt", &self.attempt)
            .finish()
    }
}

/// A question whose gateway went away before the answer reached it (its reply
/// queue is gone): the worker hands it back, for any gateway to store as pending,
/// so that it is answered when its session is loaded next (docs/storage.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    pub session_id: Uuid,
    pub turn_id: Uuid,
    /// The question.
    pub text: String,
}

/// An [`Orphan`] handed to a gateway. [`Adoption::ack`] once it is stored;
/// dropping it unsettled gives it back for another try.
pub struct Adoption {
    pub orphan: Orphan,
    settle: Box<dyn Settle>,
}

impl Adoption {
    pub fn new(orphan: Orphan, settle: Box<dyn Settle>) -> Self {
        Self { orphan, settle }
    }

    pub fn ack(self) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.settle.ack()
    }

    pub fn requeue(self) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.settle.requeue()
    }
}

/// A W3C Trace Context (`traceparent`): the trace a message belongs to and the
/// span that sent it. For a question, the trace id is its turn id, so a turn's
/// log lines in the gateway and in the worker share one trace id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    pub trace_id: TraceId,
    /// The span of the process that published the message.
    pub parent_span_id: SpanId,
}

/// 16 bytes, written as 32 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId(pub u128);

/// 8 bytes, written as 16 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId(pub u64);

impl TraceId {
    /// A turn's trace: the turn id's 32 hex digits.
    pub fn of_turn(turn_id: Uuid) -> Self {
        Self(turn_id.as_u128())
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl std::fmt::Display for SpanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// How an engine settles one delivery (see [`Delivery`]).
pub trait Settle: Send {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>>;
    fn requeue(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>>;
    fn reject(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>>;
}

/// The gateway's end of its reply queue: where answers for its sessions arrive,
/// and notices from other gateways.
pub struct ReplyQueue {
    /// Put in [`Question::reply_to`] so workers know where to answer; also the
    /// gateway's name as the holder of its sessions, where notices are sent.
    pub address: String,
    pub answers: BoxStream<'static, Answer>,
    pub notices: BoxStream<'static, Notice>,
}

/// What gateways tell each other when a session changes hands (docs/storage.md,
/// "Several gateways"). Sent to the [`ReplyQueue::address`] of the gateway meant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notice {
    /// The gateway at `by` holds the session now: let go of it (close its socket,
    /// drop it from memory, store nothing more of it), then answer `released`.
    TakeOver { session_id: Uuid, by: String },
    /// The session was let go, and everything stored of it before is written.
    Released { session_id: Uuid },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached or refused the operation.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The work queue is full: the system is overloaded.
    #[error("the question queue is full")]
    Full,
    /// The reply address is unknown (the gateway that asked has gone).
    #[error("no reply queue named {0}")]
    NoSuchReplyQueue(String),
}

/// The broker connection, as [`Broker::connection_state`] reports each change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionState {
    pub connected: bool,
    /// How many times the connection was lost since the start. Answers in flight
    /// at such a moment may be gone, so turns waiting for them cannot trust them;
    /// a count rather than a flag, so a loss is seen even when the reconnection
    /// follows before the watcher looks.
    pub lost: u64,
}

/// One broker interface, several engines. A gateway uses the question/cancel/reply
/// half, a worker the delivery/answer half; `parlor serve` uses both.
pub trait Broker: Send + Sync + 'static {
    /// `"embedded"` or `"rabbitmq"`.
    fn kind(&self) -> &'static str;
    fn is_connected(&self) -> bool;
    /// The connection's state, changing when it is lost or back. The embedded
    /// engine's never changes.
    fn connection_state(&self) -> watch::Receiver<ConnectionState>;

    /// Opens this gateway's reply queue. Call once per gateway process.
    fn open_reply_queue(&self) -> BoxFuture<'static, Result<ReplyQueue, BrokerError>>;
    fn publish_question(&self, question: Question) -> BoxFuture<'static, Result<(), BrokerError>>;
    /// Tells every worker to stop the turn, wherever it runs.
    fn publish_cancel(&self, turn_id: Uuid) -> BoxFuture<'static, Result<(), BrokerError>>;

    /// Starts consuming questions. Nothing is delivered beyond what the stream's
    /// reader pulls, so a worker pool bounds its prefetch by pulling only when it
    /// has an idle worker.
    fn consume_questions(
        &self,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Delivery>, BrokerError>>;
    /// Turn ids whose cancellation any gateway published.
    fn subscribe_cancels(
        &self,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Uuid>, BrokerError>>;
    fn publish_answer(
        &self,
        reply_to: &str,
        answer: Answer,
    ) -> BoxFuture<'static, Result<(), BrokerError>>;

    /// Hands back the question of a turn whose gateway is gone (worker side).
    fn publish_orphan(&self, orphan: Orphan) -> BoxFuture<'static, Result<(), BrokerError>>;
    /// The orphans workers handed back, shared among the gateways (gateway side).
    fn consume_orphans(
        &self,
    ) -> BoxFuture<'static, Result<BoxStream<'static, Adoption>, BrokerError>>;

    /// Sends `notice` to the gateway whose reply address is `to`; answers whether
    /// it arrived: `false` when that gateway is gone.
    fn publish_notice(
        &self,
        to: &str,
        notice: Notice,
    ) -> BoxFuture<'static, Result<bool, BrokerError>>;
}
