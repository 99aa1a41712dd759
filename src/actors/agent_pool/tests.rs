use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::actors::testing::{Rig, Settled, done};
use crate::broker::AnswerBody;
use crate::conversation::{ErrorCode, FinishReason};

fn assert_unavailable(body: AnswerBody) {
    match body {
        AnswerBody::Error(error) => assert_eq!(error.code, ErrorCode::Unavailable),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[actix::test]
async fn one_worker_runs_as_many_turns_at_once_as_it_has_slots() {
    tokio::time::pause();
    let mut rig = Rig::start(1, 3).await;
    let start = Instant::now();
    let mut turns = Vec::new();
    for _ in 0..4 {
        turns.push(rig.ask("sleep 1000").await);
    }
    rig.until_busy(3).await;
    assert_eq!(rig.pool.send(GetPoolStatus).await.unwrap().size, 3);

    // Three answer together after one second; the fourth waited for a slot.
    let mut ended = Vec::new();
    for _ in 0..8 {
        let answer = rig.next_answer().await;
        if answer.body.ends_turn() {
            assert_eq!(answer.body, done());
            ended.push((answer.turn_id, start.elapsed()));
        }
    }
    // (Timers fire on the millisecond after their deadline.)
    let about = |seconds| Duration::from_secs(seconds)..Duration::from_millis(seconds * 1000 + 5);
    assert!(
        ended[..3].iter().all(|(_, at)| about(1).contains(at)),
        "{ended:?}"
    );
    assert_eq!(ended[3].0, turns[3]);
    assert!(about(2).contains(&ended[3].1), "{ended:?}");
    rig.until_busy(0).await;
}

#[actix::test]
async fn a_cancel_stops_only_its_turn() {
    tokio::time::pause();
    let mut rig = Rig::start(1, 2).await;
    let cancelled = rig.ask("sleep 5000").await;
    rig.until_busy(1).await;
    let kept = rig.ask("sleep 1000").await;
    rig.until_busy(2).await;

    rig.broker.publish_cancel(cancelled).await.unwrap();
    let cancelled_end = AnswerBody::Done {
        finish_reason: FinishReason::Cancelled,
    };
    assert_eq!(rig.end_of(cancelled).await, cancelled_end);
    assert_eq!(rig.pool.send(GetPoolStatus).await.unwrap().busy, 1);
    assert_eq!(rig.end_of(kept).await, done());
    rig.until_busy(0).await;
    let settled = rig.broker.settled();
    assert_eq!(
        settled,
        vec![(cancelled, Settled::Acked), (kept, Settled::Acked)]
    );
}

#[actix::test]
async fn a_question_cancelled_before_it_is_taken_is_not_answered() {
    tokio::time::pause();
    let mut rig = Rig::start(1, 1).await;
    let running = rig.ask("sleep 1000").await;
    rig.until_busy(1).await;
    let waiting = rig.ask("sleep 1000").await;
    rig.broker.publish_cancel(waiting).await.unwrap();

    assert_eq!(rig.end_of(running).await, done());
    rig.until_busy(0).await;
    let next = rig.ask("fine").await;
    assert_eq!(rig.end_of(next).await, done());
    assert!(rig.broker.settled().contains(&(waiting, Settled::Acked)));
}

#[actix::test]
async fn running_turns_are_given_back_to_the_queue() {
    tokio::time::pause();
    let mut rig = Rig::start(2, 2).await;
    let mut turns = Vec::new();
    for _ in 0..3 {
        turns.push(rig.ask("sleep 60000").await);
    }
    rig.until_busy(3).await;

    rig.pool.send(GiveBackRunning).await.unwrap();
    rig.until_busy(0).await;
    let mut settled = rig.broker.settled();
    settled.sort();
    let mut expected: Vec<_> = turns.iter().map(|&id| (id, Settled::Requeued)).collect();
    expected.sort();
    assert_eq!(settled, expected);
}

#[actix::test]
async fn questions_go_to_the_least_loaded_worker() {
    tokio::time::pause();
    let mut rig = Rig::start(2, 2).await;
    rig.ask("sleep 60000").await;
    rig.until_busy(1).await;
    rig.ask("sleep 60000").await;
    rig.until_busy(2).await;
    rig.until_workers_handled(&[1, 1]).await;

    rig.ask("sleep 60000").await;
    rig.until_busy(3).await;
    rig.ask("sleep 60000").await;
    rig.until_busy(4).await;
    rig.until_workers_handled(&[2, 2]).await;
}

#[actix::test]
async fn a_worker_that_dies_is_replaced_and_all_its_turns_end_with_an_error() {
    tokio::time::pause();
    let mut rig = Rig::start(1, 2).await;
    let bystander = rig.ask("sleep 60000").await;
    rig.until_busy(1).await;
    let culprit = rig.ask("panic").await;

    let mut failed = Vec::new();
    for _ in 0..2 {
        let answer = rig.next_answer().await;
        assert_unavailable(answer.body);
        failed.push(answer.turn_id);
    }
    failed.sort();
    let mut expected = vec![bystander, culprit];
    expected.sort();
    assert_eq!(failed, expected);
    assert_eq!(rig.counters.totals().worker_restarts, 1);
    rig.until_busy(0).await;

    // The replacement worker answers the next question.
    let next = rig.ask("fine").await;
    assert_eq!(
        rig.next_answer().await.body,
        AnswerBody::Chunk {
            seq: 0,
            text: "ok".into()
        }
    );
    assert_eq!(rig.end_of(next).await, done());
    rig.until_busy(0).await;
    assert_eq!(rig.pool.send(GetPoolStatus).await.unwrap().size, 2);

    // The bystander's turn died with its worker: it never answers or settles.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(rig.broker.settled(), vec![(next, Settled::Acked)]);
}

#[actix::test]
async fn a_question_delivered_too_often_is_set_aside() {
    tokio::time::pause();
    let mut rig = Rig::start(1, 1).await;
    let poison = rig.ask_attempt("fine", 4).await;
    assert_unavailable(rig.end_of(poison).await);
    assert_eq!(rig.broker.settled(), vec![(poison, Settled::Rejected)]);
}

#[actix::test]
async fn a_stopped_pool_takes_no_more_questions() {
    tokio::time::pause();
    let mut rig = Rig::start(1, 1).await;
    let running = rig.ask("sleep 1000").await;
    rig.until_busy(1).await;
    assert!(rig.status.borrow().taking);
    rig.pool.send(StopTaking).await.unwrap();
    assert!(!rig.status.borrow().taking, "readiness sees it at once");
    assert_eq!(rig.end_of(running).await, done());
    rig.until_busy(0).await;
    assert!(
        rig.try_ask("late").await.is_err(),
        "nobody consumes questions"
    );
}
