use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use super::*;

#[test]
fn each_event_moves_its_totals() {
    let counters = Counters::default();
    let mut expected = Totals::default();
    assert_eq!(counters.totals(), expected);

    counters.session_created();
    counters.session_created();
    counters.session_closed();
    expected.sessions_created = 2;
    expected.sessions_active = 1;
    assert_eq!(counters.totals(), expected);

    counters.turn_started();
    counters.turn_started();
    counters.turn_started();
    counters.turn_ended(TurnResult::Completed);
    counters.turn_ended(TurnResult::Cancelled);
    expected.turns = TurnTotals {
        started_total: 3,
        completed_total: 1,
        failed_total: 0,
        cancelled_total: 1,
    };
    assert_eq!(counters.totals(), expected);
    assert_eq!(counters.turns_in_flight(), 1);
    counters.turn_ended(TurnResult::Failed);
    expected.turns.failed_total = 1;
    assert_eq!(counters.turns_in_flight(), 0);

    counters.question_published();
    counters.question_consumed(1);
    counters.question_consumed(2);
    counters.worker_restarted();
    counters.pool_status(8, 3);
    counters.broker_connection(true);
    expected.questions_published = 1;
    expected.questions_consumed = 2;
    expected.questions_redelivered = 1;
    expected.worker_restarts = 1;
    expected.workers_size = 8;
    expected.workers_busy = 3;
    expected.broker_connected = true;
    assert_eq!(counters.totals(), expected);

    // What only the histograms and the worker's series record leaves the totals be.
    counters.first_chunk(Duration::from_millis(5));
    counters.turn_lasted(Duration::from_millis(9));
    counters.turn_run(TurnOutcome::Completed, Duration::from_millis(8));
    counters.broker_connection(false);
    expected.broker_connected = false;
    assert_eq!(counters.totals(), expected);
}

/// Counters whose series go to a recorder of the test's own.
fn recorded() -> (Counters, PrometheusRecorder) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let counters = metrics::with_local_recorder(&recorder, Counters::default);
    (counters, recorder)
}

/// The sample lines of `/metrics` (no comments), sorted.
fn samples(recorder: &PrometheusRecorder) -> Vec<String> {
    let text = recorder.handle().render();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

fn has(samples: &[String], line: &str) -> bool {
    samples.iter().any(|sample| sample == line)
}

#[test]
fn every_series_shows_from_the_start_at_zero() {
    let (_counters, recorder) = recorded();
    let samples = samples(&recorder);
    for line in [
        "parlor_sessions_active 0",
        "parlor_sessions_created_total 0",
        "parlor_turns_started_total 0",
        "parlor_turns_completed_total 0",
        "parlor_turns_failed_total 0",
        "parlor_turns_cancelled_total 0",
        "parlor_broker_published_total 0",
        "parlor_broker_consumed_total 0",
        "parlor_broker_redelivered_total 0",
        "parlor_broker_connected 0",
        "parlor_workers_size 0",
        "parlor_workers_busy 0",
        "parlor_worker_restarts_total 0",
        "parlor_worker_turns_total{outcome=\"completed\"} 0",
        "parlor_worker_turns_total{outcome=\"given_back\"} 0",
        "parlor_turn_first_chunk_seconds_count 0",
        "parlor_turn_duration_seconds_count 0",
        "parlor_worker_turn_duration_seconds_count 0",
    ] {
        assert!(has(&samples, line), "no {line:?} in {samples:#?}");
    }
    assert!(samples.iter().all(|line| line.starts_with("parlor_")));
}

#[test]
fn each_event_moves_its_series_at_once() {
    let (counters, recorder) = recorded();
    counters.session_created();
    counters.session_created();
    counters.session_closed();
    counters.turn_started();
    counters.first_chunk(Duration::from_millis(30));
    counters.turn_lasted(Duration::from_millis(400));
    counters.turn_ended(TurnResult::Completed);
    counters.turn_ended(TurnResult::Cancelled);
    counters.turn_ended(TurnResult::Failed);
    counters.turn_ended(TurnResult::Failed);
    counters.question_published();
    counters.question_consumed(1);
    counters.question_consumed(3);
    counters.worker_restarted();
    counters.turn_run(TurnOutcome::Completed, Duration::from_millis(350));
    counters.turn_run(TurnOutcome::GivenBack, Duration::from_millis(20));
    counters.turn_run(TurnOutcome::GivenBack, Duration::from_millis(20));
    counters.pool_status(16, 2);
    counters.broker_connection(true);

    let samples = samples(&recorder);
    for line in [
        "parlor_sessions_created_total 2",
        "parlor_sessions_active 1",
        "parlor_turns_started_total 1",
        "parlor_turns_completed_total 1",
        "parlor_turns_cancelled_total 1",
        "parlor_turns_failed_total 2",
        "parlor_turn_first_chunk_seconds_count 1",
        "parlor_turn_first_chunk_seconds_sum 0.03",
        "parlor_turn_duration_seconds_count 1",
        "parlor_turn_duration_seconds_sum 0.4",
        "parlor_broker_published_total 1",
        "parlor_broker_consumed_total 2",
        "parlor_broker_redelivered_total 1",
        "parlor_worker_restarts_total 1",
        "parlor_worker_turns_total{outcome=\"completed\"} 1",
        "parlor_worker_turns_total{outcome=\"given_back\"} 2",
        "parlor_worker_turns_total{outcome=\"failed\"} 0",
        "parlor_worker_turn_duration_seconds_count 3",
        "parlor_workers_size 16",
        "parlor_workers_busy 2",
        "parlor_broker_connected 1",
    ] {
        assert!(has(&samples, line), "no {line:?} in {samples:#?}");
    }
}

#[test]
fn concurrent_sessions_leave_the_gauge_exact() {
    let (counters, recorder) = recorded();
    let counters = Arc::new(counters);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let counters = counters.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    counters.session_created();
                    counters.session_closed();
                }
                counters.session_created();
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(counters.totals().sessions_active, 4);
    assert!(has(&samples(&recorder), "parlor_sessions_active 4"));
}

#[tokio::test(start_paused = true)]
async fn the_wait_for_running_turns_ends_with_the_last_turn() {
    let counters = Arc::new(Counters::default());
    counters.turn_started();
    counters.turn_started();
    let ending = counters.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        ending.turn_ended(TurnResult::Completed);
        tokio::time::sleep(Duration::from_secs(1)).await;
        ending.turn_ended(TurnResult::Cancelled);
    });
    let start = tokio::time::Instant::now();
    counters.until_no_turn_runs().await;
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}
