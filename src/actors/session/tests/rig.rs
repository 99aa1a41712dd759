//! The rig every scenario of the session actor runs on: a gateway's real registry
//! and broker actor over the embedded broker, the test standing in for the worker.

use super::*;

pub(super) fn limits() -> SessionLimits {
    SessionLimits {
        max_message_bytes: 1024,
        max_unsent_bytes: 1 << 20,
        max_queued_turns: 1,
        history_window: HistoryWindow {
            messages: 8,
            bytes: usize::MAX,
        },
        turn_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(300),
        client_timeout: Duration::from_secs(30),
        cancel_on_disconnect: true,
    }
}

/// A gateway's session dependencies, and the worker's end of the broker.
pub(super) struct Gateway {
    pub(super) deps: Arc<SessionDeps>,
    pub(super) broker: Arc<dyn Broker>,
    pub(super) questions: BoxStream<'static, Delivery>,
    pub(super) cancels: BoxStream<'static, Uuid>,
}

impl Gateway {
    /// `capacity` questions may wait for the test to take them.
    pub(super) async fn start(capacity: usize) -> Self {
        let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new(capacity));
        let questions = broker.consume_questions().await.unwrap();
        let cancels = broker.subscribe_cancels().await.unwrap();
        let registry_stats = ActorStats::new("session_registry", "0");
        let registry = SessionRegistry::new(Duration::from_secs(3600), 1_000, usize::MAX);
        let reply_queue = broker.open_reply_queue().await.unwrap();
        let broker_stats = ActorStats::new("broker", reply_queue.address.clone());
        let counters = Arc::new(Counters::default());
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let broker_actor = BrokerActor::new(
            broker.clone(),
            reply_queue.address,
            reply_queue.answers,
            broker_stats.clone(),
            counters.clone(),
        );
        let deps = SessionDeps {
            client_turns: ClientTurns::new(1),
            registry: Tracked::new(registry.start(), registry_stats),
            broker: Tracked::new(broker_actor.start(), broker_stats),
            counters,
            limits: limits(),
            tools: KnownTools::new(["notes".to_owned()]),
            storage: storage.clone(),
            recorder: Recorder::start(storage),
            gateway_id: "gateway-under-test".into(),
            draining: Draining::default(),
        };
        Self {
            deps: Arc::new(deps),
            broker,
            questions,
            cancels,
        }
    }

    pub(super) async fn next_question(&mut self) -> Question {
        next(&mut self.questions).await.question
    }

    pub(super) async fn answer(&self, question: &Question, attempt: u32, body: AnswerBody) {
        let answer = Answer {
            session_id: question.session_id,
            turn_id: question.turn_id,
            attempt,
            body,
        };
        self.broker
            .publish_answer(&question.reply_to, answer)
            .await
            .unwrap();
    }

    pub(super) fn turns(&self) -> TurnTotals {
        self.deps.counters.turns()
    }
}

pub(super) async fn next<T>(stream: &mut (impl Stream<Item = T> + Unpin)) -> T {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an item within the wait")
        .expect("the stream is open")
}

pub(super) async fn next_frame(frames: &mut mpsc::UnboundedReceiver<ServerFrame>) -> ServerFrame {
    tokio::time::timeout(WAIT, frames.recv())
        .await
        .expect("a frame within the wait")
        .expect("the session keeps the listener")
}

pub(super) async fn start_turn(
    session: &Addr<SessionActor>,
    text: &str,
) -> (Uuid, mpsc::UnboundedReceiver<ServerFrame>) {
    let (turn_id, frames) = ask(session, text, None).await;
    (turn_id.expect("the turn is admitted"), frames)
}

/// Asks `session` for a turn as `client`: its id or why it was refused, and where
/// its frames go.
pub(super) async fn ask(
    session: &Addr<SessionActor>,
    text: &str,
    client: Option<ClientKey>,
) -> (
    Result<Uuid, ChatError>,
    mpsc::UnboundedReceiver<ServerFrame>,
) {
    let (listener, frames) = mpsc::unbounded_channel();
    let message = text.into();
    let asked = session
        .send(StartTurn {
            message,
            listener,
            client,
        })
        .await
        .expect("the session is running");
    (asked, frames)
}

pub(super) fn chunk(seq: u64, text: &str) -> AnswerBody {
    AnswerBody::Chunk {
        seq,
        text: text.into(),
    }
}

pub(super) fn done() -> AnswerBody {
    AnswerBody::Done {
        finish_reason: FinishReason::Stop,
    }
}

pub(super) fn chunk_frame(turn_id: Uuid, seq: u64, text: &str) -> ServerFrame {
    ServerFrame::Chunk {
        turn_id,
        seq,
        text: text.into(),
    }
}
