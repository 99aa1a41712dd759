//! Scheduling sessions: a closed loop (`--concurrency` sessions in flight, each
//! starting the next when it ends) or an open loop (`--rate` sessions per second,
//! whatever the server's pace), with ramp-up, a duration bound and the live
//! progress bar.

use std::collections::BTreeSet;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::checker::{SessionToken, is_expected_answer};
use super::drivers::{Driver, TurnFailure};
use super::limits::open_file_limit;
use super::options::Plan;
use super::probe::TurnProbe;
use super::report::Report;
use super::stats::ShardedRecorder;

/// Locks the recorders are spread over.
const RECORDER_SHARDS: usize = 16;
/// How long closing a connection may take before it is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// One run: its plan, driver and recorders, and the counters all its sessions share.
struct RunState {
    plan: Plan,
    driver: Driver,
    recorder: ShardedRecorder,
    started: Instant,
    deadline: Option<Instant>,
    progress: ProgressBar,
    sessions_started: AtomicU64,
    sessions_in_flight: AtomicU64,
    turns_ok: AtomicU64,
    turns_failed: AtomicU64,
    /// Microseconds from `started` to the end of the last turn that ended.
    last_turn_end: AtomicU64,
    /// Failure codes already described on stderr (the first of each kind is).
    described: Mutex<BTreeSet<String>>,
}

/// Runs the plan to its end and sums it up.
pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    let driver = Driver::new(&plan)?;
    let progress = progress_bar(&plan);
    let started = Instant::now();
    let state = Arc::new(RunState {
        deadline: plan.duration.map(|duration| started + duration),
        driver,
        recorder: ShardedRecorder::new(RECORDER_SHARDS),
        started,
        progress,
        sessions_started: AtomicU64::new(0),
        sessions_in_flight: AtomicU64::new(0),
        turns_ok: AtomicU64::new(0),
        turns_failed: AtomicU64::new(0),
        last_turn_end: AtomicU64::new(0),
        described: Mutex::new(BTreeSet::new()),
        plan,
    });
    let ticker = tokio::spawn(show_progress(state.clone()));
    match state.plan.rate {
        Some(rate) => open_loop(&state, rate).await,
        None => closed_loop(&state).await,
    }
    ticker.abort();
    state.progress.finish_and_clear();

    let totals = state.recorder.merged();
    let last_turn_end = Duration::from_micros(state.last_turn_end.load(Ordering::Relaxed));
    let elapsed = if last_turn_end.is_zero() {
        started.elapsed()
    } else {
        last_turn_end
    };
    let sessions = state.sessions_started.load(Ordering::Relaxed);
    Ok(Report::new(&state.plan, sessions, &totals, elapsed))
}

fn progress_bar(plan: &Plan) -> ProgressBar {
    if !plan.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let total_turns = plan
        .sessions
        .filter(|_| plan.turns > 0)
        .map(|sessions| sessions * u64::from(plan.turns));
    let (bar, template) = match total_turns {
        Some(total) => (
            ProgressBar::new(total),
            "{elapsed_precise} [{bar:30}] {pos}/{len} turns  {msg}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{elapsed_precise} {spinner} {pos} turns  {msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn show_progress(state: Arc<RunState>) {
    let mut ticks = tokio::time::interval(PROGRESS_EVERY);
    let mut last = (Instant::now(), 0u64);
    loop {
        ticks.tick().await;
        let ok = state.turns_ok.load(Ordering::Relaxed);
        let failed = state.turns_failed.load(Ordering::Relaxed);
        let now = Instant::now();
        let done = ok + failed;
        let seconds = (now - last.0).as_secs_f64();
        let rate = if seconds > 0.0 {
            (done - last.1) as f64 / seconds
        } else {
            0.0
        };
        last = (now, done);
        state.progress.set_position(done);
        state.progress.set_message(format!(
            "{rate:.0} turns/s  {failed} failed  {} sessions in flight",
            state.sessions_in_flight.load(Ordering::Relaxed)
        ));
    }
}

impl RunState {
    fn past_deadline(&self, at: Instant) -> bool {
        self.deadline.is_some_and(|deadline| at >= deadline)
    }

    fn all_started(&self, index: u64) -> bool {
        self.plan.sessions.is_some_and(|sessions| index >= sessions)
    }

    /// Says on stderr what the first failure of each kind was.
    fn describe(&self, failure: &TurnFailure) {
        let first = self
            .described
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(failure.code.to_string());
        if !first {
            return;
        }
        let text = if failure.code == "emfile" {
            let limit = open_file_limit().map_or("unknown".into(), |limit| limit.to_string());
            format!(
                "the open-file limit was reached (RLIMIT_NOFILE = {limit}): no more connections \
                 can be opened; lower --concurrency or raise the hard limit ({})",
                failure.detail
            )
        } else {
            format!("first `{}` failure: {}", failure.code, failure.detail)
        };
        self.progress.suspend(|| eprintln!("loadtest: {text}"));
    }

    /// Counts a failure that ended session `index` before `unsent` of its turns
    /// were sent (the first of them counts as the failed one, the others as skipped).
    fn fail_session(&self, index: u64, failure: &TurnFailure, unsent: u32) {
        self.describe(failure);
        self.recorder.with(index, |recorder| {
            recorder.count_error(&failure.code);
            recorder.turns_failed += u64::from(unsent);
            recorder.turns_skipped += u64::from(unsent.saturating_sub(1));
        });
        self.turns_failed
            .fetch_add(u64::from(unsent), Ordering::Relaxed);
    }

    fn turn_ended(&self) {
        let micros = self.started.elapsed().as_micros() as u64;
        self.last_turn_end.fetch_max(micros, Ordering::Relaxed);
    }
}

/// `--concurrency` slots; each runs sessions one after another until all have
/// started or the duration is over. With a ramp, slots start spread over it.
async fn closed_loop(state: &Arc<RunState>) {
    let concurrency = state.plan.concurrency.unwrap_or(1);
    let slots = match state.plan.sessions {
        Some(sessions) => concurrency.min(usize::try_from(sessions).unwrap_or(usize::MAX)),
        None => concurrency,
    };
    let next_index = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for slot in 0..slots {
        let state = state.clone();
        let next_index = next_index.clone();
        let start_at = state.started + state.plan.ramp.mul_f64(slot as f64 / slots as f64);
        tasks.spawn(async move {
            sleep_until(start_at).await;
            loop {
                if state.past_deadline(Instant::now()) {
                    break;
                }
                let index = next_index.fetch_add(1, Ordering::Relaxed);
                if state.all_started(index) {
                    break;
                }
                run_session(&state, index, None).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Sessions start at their intended times, `rate` per second (climbing from 0
/// over the ramp), at most `--concurrency` in flight if given. A session that
/// starts late — the cap, or a loaded machine — counts its first turn from its
/// intended start, so queueing shows in the latencies.
async fn open_loop(state: &Arc<RunState>, rate: f64) {
    let cap = state
        .plan
        .concurrency
        .map(|cap| Arc::new(Semaphore::new(cap)));
    let mut tasks = JoinSet::new();
    for index in 0u64.. {
        if state.all_started(index) {
            break;
        }
        let intended = state.started + intended_start(index, rate, state.plan.ramp);
        if state.past_deadline(intended) {
            break;
        }
        sleep_until(intended).await;
        let permit = match &cap {
            Some(cap) => match cap.clone().acquire_owned().await {
                Ok(permit) => Some(permit),
                Err(_) => break,
            },
            None => None,
        };
        let session_state = state.clone();
        tasks.spawn(async move {
            run_session(&session_state, index, Some(intended)).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// When session `index` should start, from the run's start: `rate` per second
/// after a linear ramp from 0 over `ramp`.
pub fn intended_start(index: u64, rate: f64, ramp: Duration) -> Duration {
    let index = index as f64;
    let ramp = ramp.as_secs_f64();
    // Sessions started by time t during the ramp: rate·t²/(2·ramp).
    let during_ramp = rate * ramp / 2.0;
    let seconds = if index < during_ramp {
        (2.0 * index * ramp / rate).sqrt()
    } else {
        ramp + (index - during_ramp) / rate
    };
    Duration::from_secs_f64(seconds)
}

/// One session: open it, run its turns, hold it open if asked, close it.
async fn run_session(state: &RunState, index: u64, intended: Option<Instant>) {
    let plan = &state.plan;
    state.sessions_started.fetch_add(1, Ordering::Relaxed);
    state.sessions_in_flight.fetch_add(1, Ordering::Relaxed);

    let opening = Instant::now();
    let mut session = match timeout(plan.turn_timeout, state.driver.open()).await {
        Ok(Ok(session)) => {
            let took = opening.elapsed();
            state
                .recorder
                .with(index, |recorder| recorder.connect.record(took));
            Some(session)
        }
        Ok(Err(failure)) => {
            state.fail_session(index, &failure, plan.turns);
            None
        }
        Err(_) => {
            let failure = TurnFailure::new("timeout", "opening the session took too long");
            state.fail_session(index, &failure, plan.turns);
            None
        }
    };

    if let Some(open) = session.as_mut() {
        let mut probe = TurnProbe::new(SessionToken::new(&plan.run_id, index));
        let mut failed = false;
        for turn in 1..=plan.turns {
            if turn > 1 && !plan.think.is_zero() {
                sleep(plan.think).await;
            }
            let text = probe.token().message(turn, plan.message_words);
            let now = Instant::now();
            probe.begin(if turn == 1 {
                intended.unwrap_or(now)
            } else {
                now
            });
            let result = timeout(
                plan.turn_timeout,
                open.turn(&state.driver, &text, &mut probe),
            )
            .await
            .unwrap_or_else(|_| {
                Err(TurnFailure::new(
                    "timeout",
                    format!("no end of turn within {:?}", plan.turn_timeout),
                ))
            });
            state.turn_ended();
            match result {
                Ok(()) => {
                    let wrong = plan.check_answers
                        && !probe
                            .answer()
                            .is_some_and(|answer| is_expected_answer(answer, &text, turn));
                    let record = probe.record(None, wrong);
                    state.recorder.with(index, |r| r.record_turn(&record));
                    state.turns_ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(failure) => {
                    state.describe(&failure);
                    let record = probe.record(Some(&failure.code), false);
                    state.recorder.with(index, |recorder| {
                        recorder.record_turn(&record);
                        let skipped = u64::from(plan.turns - turn);
                        recorder.turns_failed += skipped;
                        recorder.turns_skipped += skipped;
                    });
                    state
                        .turns_failed
                        .fetch_add(u64::from(plan.turns - turn + 1), Ordering::Relaxed);
                    failed = true;
                    break;
                }
            }
        }
        if !failed && !plan.hold.is_zero() {
            sleep(plan.hold).await;
        }
    }
    if let Some(session) = session {
        let _ = timeout(CLOSE_WAIT, session.close()).await;
    }
    state.sessions_in_flight.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn without_ramp_sessions_start_evenly() {
        let none = Duration::ZERO;
        assert_eq!(secs(intended_start(0, 10.0, none)), 0.0);
        assert!((secs(intended_start(5, 10.0, none)) - 0.5).abs() < 1e-9);
        assert!((secs(intended_start(100, 10.0, none)) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_ramp_climbs_to_the_rate() {
        let ramp = Duration::from_secs(4);
        // 10/s after a 4 s ramp: 20 sessions start during the ramp.
        assert_eq!(secs(intended_start(0, 10.0, ramp)), 0.0);
        assert!((secs(intended_start(5, 10.0, ramp)) - 2.0).abs() < 1e-9);
        assert!((secs(intended_start(20, 10.0, ramp)) - 4.0).abs() < 1e-9);
        assert!((secs(intended_start(30, 10.0, ramp)) - 5.0).abs() < 1e-9);
        // Start times never go back.
        let times: Vec<f64> = (0..100)
            .map(|i| secs(intended_start(i, 10.0, ramp)))
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }
}
