//! Rolling restarts (docs/protocol.md#failures-and-recovery): a worker stopped with
//! SIGTERM while its turns are mid-answer takes no more questions, finishes what it
//! runs within `worker.shutdown_grace_s`, and gives back only what it cannot
//! finish, for another worker to answer whole. Every turn ends once, complete.

mod common;

use std::time::Duration;

use common::deployment::{Deployment, wait_for_readiness};
use common::{Client, Process, WAIT, expected_answer, mock_llm, mock_stats, wait_for_mock};
use parlor::protocol::ServerFrame;
use tokio::time::Instant;
use uuid::Uuid;

/// Each worker process runs this many turns at once (`workers.count`).
const SLOTS: usize = 3;
const SLOTS_SETTING: &str = "3";

/// A question whose answer takes about `words` × the model's pace.
fn question(client: usize, words: usize) -> String {
    format!("client {client} {}", "word ".repeat(words).trim_end())
}

/// A client with a turn under way: the first chunk of its answer was read.
struct Asking {
    client: Client,
    text: String,
    turn_id: Uuid,
    /// The answer as far as it was read.
    first_chunk: String,
}

/// Asks `text` and waits for the first chunk: a worker is answering it.
async fn ask_mid_answer(gateway: &Process, text: String) -> Asking {
    let mut client = Client::connect(gateway).await;
    let turn_id = client.chat_accepted(&text).await;
    let first_chunk = match client.next_frame().await {
        ServerFrame::Chunk { seq: 0, text, .. } => text,
        other => panic!("expected the first chunk, got {other:?}"),
    };
    Asking {
        client,
        text,
        turn_id,
        first_chunk,
    }
}

/// Asks `text` and only waits for `accepted`: the question may wait in the queue.
async fn ask_queued(gateway: &Process, text: String) -> Asking {
    let mut client = Client::connect(gateway).await;
    let turn_id = client.chat_accepted(&text).await;
    Asking {
        client,
        text,
        turn_id,
        first_chunk: String::new(),
    }
}

impl Asking {
    /// Reads the turn to its end, which must be `done`/`stop` with the whole answer.
    /// `read_turn` fails on any `reset`: with `restarted`, one is expected first,
    /// and the answer is read again from `seq` 0 after it.
    async fn read_to_the_end(mut self, restarted: bool) -> Client {
        let (turn, answer) = if restarted {
            skip_to_reset(&mut self.client, self.turn_id).await;
            let turn = self.client.read_turn(self.turn_id).await;
            let answer = turn.answer.clone();
            (turn, answer)
        } else {
            let first_seq = usize::from(!self.first_chunk.is_empty());
            let turn = self.client.read_turn_from(self.turn_id, first_seq).await;
            let answer = format!("{}{}", self.first_chunk, turn.answer);
            (turn, answer)
        };
        assert_eq!(turn.ending, "stop", "{turn:?}");
        assert_eq!(answer, expected_answer(&self.text, 1));
        self.client
    }
}

/// Skips the chunks sent before the turn restarted elsewhere, up to its `reset`.
async fn skip_to_reset(client: &mut Client, turn_id: Uuid) {
    loop {
        match client.next_frame().await {
            ServerFrame::Chunk { turn_id: id, .. } if id == turn_id => continue,
            ServerFrame::Reset { turn_id: id, .. } if id == turn_id => return,
            other => panic!("expected the turn's chunks, then its reset; got {other:?}"),
        }
    }
}

/// Reads every turn to its end at once; answers the clients, and how long it took.
async fn read_all(turns: Vec<Asking>, restarted: bool) -> (Vec<Client>, Duration) {
    let start = Instant::now();
    let reading = turns
        .into_iter()
        .map(|turn| tokio::spawn(turn.read_to_the_end(restarted)));
    let mut clients = Vec::new();
    for client in futures_util::future::join_all(reading).await {
        clients.push(client.expect("a turn went wrong"));
    }
    (clients, start.elapsed())
}

/// Each session's next turn is its second: the first ended once, and nothing of
/// it comes after its end (the next frame is the new turn's `accepted`).
async fn each_turn_happened_once(clients: Vec<Client>) {
    let asking = clients.into_iter().map(|mut client| {
        tokio::spawn(async move {
            let turn = client.chat("next").await;
            assert_eq!(turn.answer, expected_answer("next", 2));
        })
    });
    for asked in futures_util::future::join_all(asking).await {
        asked.expect("a second turn went wrong");
    }
}

/// A deployment whose workers run [`SLOTS`] turns each and stop within `grace_s`.
fn deployment(grace_s: &'static str) -> (Deployment, common::rabbitmq::Cleanup) {
    Deployment::new(
        mock_llm(0, 40),
        &[
            ("PARLOR_WORKER__SHUTDOWN_GRACE_S", grace_s),
            ("PARLOR_WORKERS__COUNT", SLOTS_SETTING),
        ],
    )
}

async fn worker(deployment: &Deployment) -> Process {
    let worker = deployment.worker();
    wait_for_readiness(&worker, 200).await;
    worker
}

#[tokio::test]
async fn a_worker_stopped_mid_answer_finishes_its_turns_and_takes_no_more() {
    const GRACE: Duration = Duration::from_secs(10);
    let (deployment, _cleanup) = deployment("10");
    let gateway = deployment.gateway();
    // The first worker alone takes the first turns, so it is surely mid-answer...
    let mut stopping = worker(&deployment).await;
    let mut turns = Vec::new();
    for client in 0..SLOTS {
        turns.push(ask_mid_answer(&gateway, question(client, 30)).await);
    }
    // ...and, it being full, the next ones go to the second.
    let staying = worker(&deployment).await;
    for client in SLOTS..2 * SLOTS {
        turns.push(ask_mid_answer(&gateway, question(client, 30)).await);
    }
    // Both are full: these wait in the queue, for the worker that stays.
    for client in 2 * SLOTS..2 * SLOTS + 2 {
        turns.push(ask_queued(&gateway, question(client, 30)).await);
    }
    let asked = turns.len();

    stopping.terminate();
    let stopped = Instant::now();
    let (clients, _) = read_all(turns, false).await;
    assert!(
        stopped.elapsed() < GRACE,
        "every turn ended within the grace: {:?}",
        stopped.elapsed()
    );
    let status = stopping.wait_exit(GRACE.saturating_sub(stopped.elapsed()));
    assert!(status.expect("the worker exits within its grace").success());

    // Each question reached the model once: none was answered twice.
    let stats = mock_stats(&deployment.model).await;
    assert_eq!(stats["requests"], asked, "{stats}");
    assert_eq!(stats["streams_completed"], asked, "{stats}");
    each_turn_happened_once(clients).await;
    drop(staying);
}

#[tokio::test]
async fn what_a_stopped_worker_cannot_finish_in_its_grace_is_answered_by_another() {
    let (deployment, _cleanup) = deployment("1");
    let gateway = deployment.gateway();
    let mut stopping = worker(&deployment).await;
    let mut turns = Vec::new();
    // About 3.5 s each at 40 ms a word: longer than the grace.
    for client in 0..SLOTS {
        turns.push(ask_mid_answer(&gateway, question(client, 80)).await);
    }
    let _staying = worker(&deployment).await;

    stopping.terminate();
    let stopped = Instant::now();
    let (clients, _) = read_all(turns, true).await;
    // The grace, then the whole answer again: well within the wait.
    assert!(stopped.elapsed() < WAIT, "{:?}", stopped.elapsed());
    let status = stopping.wait_exit(WAIT);
    assert!(status.expect("the worker exits").success());

    // Each question was asked twice: cut off on the first worker, whole on the other.
    wait_for_mock(&deployment.model, "the cut-off answers", |stats| {
        stats["requests"] == 2 * SLOTS && stats["streams_cancelled"] == SLOTS
    })
    .await;
    each_turn_happened_once(clients).await;
}
