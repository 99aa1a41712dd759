//! The whole session actor in-process: a real registry and broker actor over the
//! embedded broker, with the test in the worker's place, taking questions and
//! publishing answers. The rig is in `rig.rs`; the scenarios read as one story of
//! the actor.

use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};

use super::*;
use crate::actors::registry::Lookup;
use crate::actors::stats::ActorStats;
use crate::broker::embedded::EmbeddedBroker;
use crate::broker::{AnswerBody, Broker, Delivery, Question};
use crate::conversation::{ErrorCode, KnownTools};
use crate::counters::TurnTotals;
use crate::storage::{MemoryStorage, Recorder, Storage};

/// How long any one step may take (virtual time where the test pauses the clock).
const WAIT: Duration = Duration::from_secs(5);

mod client_limits;
mod rig;

use rig::*;

#[actix::test]
async fn a_restarted_turn_resets_and_only_its_last_delivery_is_remembered() {
    let mut gateway = Gateway::start(8).await;
    let seed = vec![
        ChatMessage::user("earlier"),
        ChatMessage::assistant("noted"),
    ];
    let (session_id, session) = SessionActor::start(gateway.deps.clone(), seed.clone());
    let (turn_id, mut frames) = start_turn(&session, "hello").await;

    let question = gateway.next_question().await;
    assert_eq!(question.session_id, session_id);
    assert_eq!(question.turn_id, turn_id);
    assert_eq!(question.text, "hello");
    assert_eq!(question.history, seed);
    assert_eq!(
        next_frame(&mut frames).await,
        ServerFrame::Accepted { turn_id }
    );

    gateway.answer(&question, 1, chunk(0, "Hel")).await;
    gateway.answer(&question, 1, chunk(1, "lo wor")).await;
    assert_eq!(
        next_frame(&mut frames).await,
        chunk_frame(turn_id, 0, "Hel")
    );
    assert_eq!(
        next_frame(&mut frames).await,
        chunk_frame(turn_id, 1, "lo wor")
    );

    // The first worker died; the second delivery starts over.
    gateway.answer(&question, 2, chunk(0, "Hello")).await;
    gateway.answer(&question, 1, chunk(2, "ld")).await; // late, from the dead worker
    gateway.answer(&question, 2, chunk(0, "Hello")).await; // a duplicate
    gateway.answer(&question, 2, chunk(1, " world")).await;
    gateway.answer(&question, 2, done()).await;
    assert!(matches!(
        next_frame(&mut frames).await,
        ServerFrame::Reset { turn_id: reset, .. } if reset == turn_id
    ));
    assert_eq!(
        next_frame(&mut frames).await,
        chunk_frame(turn_id, 0, "Hello")
    );
    assert_eq!(
        next_frame(&mut frames).await,
        chunk_frame(turn_id, 1, " world")
    );
    assert_eq!(
        next_frame(&mut frames).await,
        ServerFrame::Done {
            turn_id,
            finish_reason: FinishReason::Stop
        }
    );
    assert_eq!(gateway.turns().completed_total, 1);

    let (_, _frames) = start_turn(&session, "again").await;
    let mut remembered = seed;
    remembered.push(ChatMessage::user("hello"));
    remembered.push(ChatMessage::assistant("Hello world"));
    assert_eq!(gateway.next_question().await.history, remembered);
}

#[actix::test]
async fn the_end_of_a_stale_attempt_does_not_end_the_turn() {
    let mut gateway = Gateway::start(8).await;
    let (_, session) = SessionActor::start(gateway.deps.clone(), Vec::new());
    let (turn_id, mut frames) = start_turn(&session, "hello").await;
    let question = gateway.next_question().await;
    next_frame(&mut frames).await; // accepted

    // The question went to a second worker while the first one finished anyway
    // (a rolling restart): the first one's end comes in the middle of the second
    // one's answer, and must not cut it off.
    gateway.answer(&question, 1, chunk(0, "Hi")).await;
    gateway.answer(&question, 2, chunk(0, "Hello")).await;
    gateway.answer(&question, 1, done()).await;
    gateway.answer(&question, 2, chunk(1, " world")).await;
    gateway.answer(&question, 2, done()).await;
    let mut answer = String::new();
    loop {
        match next_frame(&mut frames).await {
            ServerFrame::Chunk { text, .. } => answer.push_str(&text),
            ServerFrame::Reset { .. } => answer.clear(),
            ServerFrame::Done { turn_id: ended, .. } => {
                assert_eq!(ended, turn_id);
                break;
            }
            frame => panic!("unexpected {frame:?}"),
        }
    }
    assert_eq!(answer, "Hello world");
}

#[actix::test]
async fn messages_wait_for_the_running_turn_and_beyond_the_limit_get_busy() {
    let mut gateway = Gateway::start(8).await;
    let (_, session) = SessionActor::start(gateway.deps.clone(), Vec::new());
    let (first, mut first_frames) = start_turn(&session, "one").await;
    let (second, mut second_frames) = start_turn(&session, "two").await;
    let (refused, _frames) = ask(&session, "three", None).await;
    assert!(
        matches!(
            refused,
            Err(ChatError {
                code: ErrorCode::Busy,
                ..
            })
        ),
        "{refused:?}"
    );

    let question = gateway.next_question().await;
    assert_eq!(question.turn_id, first);
    gateway.answer(&question, 1, done()).await;
    assert_eq!(
        next_frame(&mut first_frames).await,
        ServerFrame::Accepted { turn_id: first }
    );
    assert!(matches!(
        next_frame(&mut first_frames).await,
        ServerFrame::Done { .. }
    ));

    let question = gateway.next_question().await;
    assert_eq!(question.turn_id, second);
    assert_eq!(question.history, vec![ChatMessage::user("one")]);
    assert_eq!(
        next_frame(&mut second_frames).await,
        ServerFrame::Accepted { turn_id: second }
    );
}

#[actix::test]
async fn a_failed_turn_is_reported_and_not_remembered() {
    let mut gateway = Gateway::start(8).await;
    let (_, session) = SessionActor::start(gateway.deps.clone(), Vec::new());
    let (turn_id, mut frames) = start_turn(&session, "hello").await;
    let question = gateway.next_question().await;
    gateway.answer(&question, 1, chunk(0, "Hel")).await;
    let error = AnswerBody::Error(ChatError::new(ErrorCode::Upstream, "the model failed"));
    gateway.answer(&question, 1, error).await;
    assert_eq!(
        next_frame(&mut frames).await,
        ServerFrame::Accepted { turn_id }
    );
    assert_eq!(
        next_frame(&mut frames).await,
        chunk_frame(turn_id, 0, "Hel")
    );
    assert_eq!(
        next_frame(&mut frames).await,
        ServerFrame::error(Some(turn_id), ErrorCode::Upstream, "the model failed")
    );

    // A turn the broker lost ends the same way.
    let (lost, mut frames) = start_turn(&session, "again").await;
    assert_eq!(gateway.next_question().await.history, vec![]);
    session
        .send(TurnFailed {
            turn_id: lost,
            error: ChatError::new(ErrorCode::Unavailable, "the broker went away"),
        })
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut frames).await,
        ServerFrame::Accepted { turn_id: lost }
    );
    assert_eq!(
        next_frame(&mut frames).await,
        ServerFrame::error(Some(lost), ErrorCode::Unavailable, "the broker went away")
    );
    assert_eq!(gateway.turns().failed_total, 2);
}

#[actix::test]
async fn missing_chunks_end_the_turn_and_stop_the_worker() {
    let mut gateway = Gateway::start(8).await;
    let (_, session) = SessionActor::start(gateway.deps.clone(), Vec::new());
    let (turn_id, mut frames) = start_turn(&session, "hello").await;
    let question = gateway.next_question().await;
    gateway.answer(&question, 1, chunk(0, "a")).await;
    gateway.answer(&question, 1, chunk(2, "c")).await;
    assert_eq!(
        next_frame(&mut frames).await,
        ServerFrame::Accepted { turn_id }
    );
    assert_eq!(next_frame(&mut frames).await, chunk_frame(turn_id, 0, "a"));
    assert!(matches!(
        next_frame(&mut frames).await,
        ServerFrame::Error { error: ChatError { code: ErrorCode::Unavailable, .. }, turn_id: Some(id) } if id == turn_id
    ));
    assert_eq!(next(&mut gateway.cancels).await, turn_id);
}

#[actix::test]
async fn a_turn_past_its_deadline_times_out_and_stops_the_worker() {
    tokio::time::pause();
    let mut gateway = Gateway::start(8).await;
    let (_, session) = SessionActor::start(gateway.deps.clone(), Vec::new());
    let (turn_id, mut frames) = start_turn(&session, "hello").await;
    gateway.next_question().await;
    assert_eq!(
        next_frame(&mut frames).await,
        ServerFrame::Accepted { turn_id }
    );

    tokio::time::advance(limits().turn_timeout + Duration::from_secs(1)).await;
    assert!(matches!(
        next_frame(&mut frames).await,
        ServerFrame::Error { error: ChatError { code: ErrorCode::Timeout, .. }, turn_id: Some(id) } if id == turn_id
    ));
    assert_eq!(next(&mut gateway.cancels).await, turn_id);
}

#[actix::test]
async fn a_listener_that_leaves_cancels_its_turn() {
    let mut gateway = Gateway::start(8).await;
    let (_, session) = SessionActor::start(gateway.deps.clone(), Vec::new());
    let (turn_id, frames) = start_turn(&session, "hello").await;
    gateway.next_question().await;
    drop(frames);
    assert_eq!(next(&mut gateway.cancels).await, turn_id);
    assert_eq!(gateway.turns().cancelled_total, 1);
}

#[actix::test]
async fn a_question_the_broker_cannot_take_ends_the_turn_with_busy() {
    let mut gateway = Gateway::start(1).await;
    let (_, filler) = SessionActor::start(gateway.deps.clone(), Vec::new());
    let (_, _filler_frames) = start_turn(&filler, "fills the queue").await;
    let (_, session) = SessionActor::start(gateway.deps.clone(), Vec::new());
    let (turn_id, mut frames) = start_turn(&session, "one too many").await;
    assert!(matches!(
        next_frame(&mut frames).await,
        ServerFrame::Error { error: ChatError { code: ErrorCode::Busy, .. }, turn_id: Some(id) } if id == turn_id
    ));
    assert_eq!(gateway.next_question().await.text, "fills the queue");
}

#[actix::test]
async fn a_draining_session_refuses_new_turns() {
    let gateway = Gateway::start(8).await;
    let (_, session) = SessionActor::start(gateway.deps.clone(), Vec::new());
    gateway.deps.draining.begin();
    let (refused, _frames) = ask(&session, "hello", None).await;
    assert!(
        matches!(
            refused,
            Err(ChatError {
                code: ErrorCode::Unavailable,
                ..
            })
        ),
        "{refused:?}"
    );
}

#[actix::test]
async fn an_idle_session_stops_and_leaves_the_registry() {
    tokio::time::pause();
    let mut gateway = Gateway::start(8).await;
    let (session_id, session) = SessionActor::start(gateway.deps.clone(), Vec::new());
    let (_, mut frames) = start_turn(&session, "hello").await;
    let question = gateway.next_question().await;
    gateway.answer(&question, 1, done()).await;
    next_frame(&mut frames).await; // accepted
    next_frame(&mut frames).await; // done
    let lookup = || gateway.deps.registry.send(Lookup { session_id });
    assert!(lookup().await.unwrap().is_some());

    tokio::time::advance(limits().idle_timeout - Duration::from_secs(1)).await;
    assert!(session.connected(), "idle, but not for long enough");
    tokio::time::advance(Duration::from_secs(2)).await;
    tokio::time::timeout(WAIT, async {
        while session.connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the session stops");
    assert!(lookup().await.unwrap().is_none());
}
