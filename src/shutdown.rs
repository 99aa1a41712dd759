//! Stopping well on SIGTERM/SIGINT: take no new work, let running turns finish
//! within a grace period, give the rest back to the queue, then close the sockets.
//!
//! [`drain`] is the one way every command stops: `parlor gateway` drains its
//! sessions, `parlor worker` its pool, `parlor serve` both. It waits on events
//! (each ended turn, each change of the pool's load), so it returns as soon as the
//! last turn ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, timeout, timeout_at};

use crate::actors::agent_pool::{
    AgentPool, GiveBackRunning, PoolStatusWatch, StopTaking, WatchPoolStatus,
};
use crate::actors::registry::{CloseAllSessions, SessionRegistry};
use crate::actors::stats::Tracked;
use crate::counters::Counters;
use crate::draining::Draining;

/// Resolves on the first SIGTERM or SIGINT, naming it.
pub async fn signalled() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}

/// What a process runs that holds turns.
pub struct Work {
    /// The process's flag, set first: sessions refuse new turns and `/readyz`
    /// answers 503 from then on.
    pub draining: Draining,
    pub sessions: Option<Sessions>,
    pub pool: Option<Pool>,
}

/// A gateway's sessions.
pub struct Sessions {
    pub counters: Arc<Counters>,
    pub registry: Tracked<SessionRegistry>,
    /// How long their running turns may take to finish.
    pub grace: Duration,
}

/// A worker pool.
pub struct Pool {
    pub pool: Tracked<AgentPool>,
    /// Whether other processes consume the same queue (RabbitMQ). Then the pool
    /// stops taking at once and leaves the rest to them. Otherwise (the embedded
    /// broker) every question comes from this process's sessions, so the pool goes
    /// on answering until their turns have ended.
    pub shares_queue: bool,
    /// How long its running turns may take before their questions are given back.
    pub grace: Duration,
}

/// What was still running when the grace periods ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unfinished {
    /// Sessions' turns without an end.
    pub turns: u64,
    /// The pool's questions given back to the queue.
    pub given_back: usize,
}

/// How long giving questions back may take before the process exits anyway (the
/// broker requeues what is unacknowledged when the connection closes).
const GIVE_BACK_WAIT: Duration = Duration::from_secs(5);

/// Stops `work`: no new turns (the process is not ready from now on), running turns
/// finish within their grace, the pool's unfinished questions go back to the queue,
/// then every WebSocket is closed.
pub async fn drain(work: Work) -> Unfinished {
    let start = Instant::now();
    work.draining.begin();
    if let Some(pool) = work.pool.as_ref().filter(|pool| pool.shares_queue) {
        let _ = pool.pool.send(StopTaking).await;
    }
    let sessions = work.sessions.as_ref();
    let (turns, given_back) = tokio::join!(
        async {
            match sessions {
                Some(sessions) => settle_sessions(sessions, start).await,
                None => 0,
            }
        },
        async {
            match &work.pool {
                Some(pool) => settle_pool(pool, sessions, start).await,
                None => 0,
            }
        },
    );
    if let Some(sessions) = sessions {
        let _ = sessions.registry.send(CloseAllSessions).await;
    }
    Unfinished { turns, given_back }
}

/// Waits for the sessions' running turns to end; answers how many did not.
async fn settle_sessions(sessions: &Sessions, start: Instant) -> u64 {
    let deadline = start + sessions.grace;
    if timeout_at(deadline, sessions.counters.until_no_turn_runs())
        .await
        .is_ok()
    {
        return 0;
    }
    let unfinished = sessions.counters.turns_in_flight();
    tracing::warn!(
        unfinished,
        "the grace period ended with turns still running"
    );
    unfinished
}

/// Waits for the pool's running turns to end, then gives back the questions of
/// those that did not; answers how many it gave back.
async fn settle_pool(pool: &Pool, sessions: Option<&Sessions>, start: Instant) -> usize {
    let Ok(PoolStatusWatch(mut status)) = pool.pool.send(WatchPoolStatus).await else {
        return 0; // the pool is gone, and its turns with it
    };
    let idle = async {
        if !pool.shares_queue
            && let Some(sessions) = sessions
        {
            sessions.counters.until_no_turn_runs().await;
        }
        // An error means the pool stopped: nothing runs.
        let _ = status.wait_for(|status| status.busy == 0).await;
    };
    let _ = timeout_at(start + pool.grace, idle).await;
    let _ = pool.pool.send(StopTaking).await;
    let unfinished = status.borrow().busy;
    if unfinished > 0 {
        tracing::warn!(unfinished, "giving unfinished questions back to the queue");
        let _ = pool.pool.send(GiveBackRunning).await;
        let _ = timeout(GIVE_BACK_WAIT, status.wait_for(|status| status.busy == 0)).await;
    }
    unfinished
}

#[cfg(test)]
mod tests {
    use actix::Actor;

    use super::*;
    use crate::actors::stats::ActorStats;
    use crate::actors::testing::{Rig, Settled, done};
    use crate::counters::TurnResult;

    fn sessions(counters: &Arc<Counters>, grace: Duration) -> Sessions {
        let stats = ActorStats::new("session_registry", "0");
        let registry = SessionRegistry::new(Duration::from_secs(20), 1_000, usize::MAX).start();
        Sessions {
            counters: counters.clone(),
            registry: Tracked::new(registry, stats),
            grace,
        }
    }

    fn pool(rig: &Rig, shares_queue: bool, grace: Duration) -> Pool {
        Pool {
            pool: rig.pool.clone(),
            shares_queue,
            grace,
        }
    }

    /// Timers fire on the millisecond after their deadline; a drain that looked
    /// every so often would return later.
    fn at_about(elapsed: Duration, expected: Duration) -> bool {
        (expected..expected + Duration::from_millis(5)).contains(&elapsed)
    }

    #[actix::test]
    async fn the_drain_returns_as_the_last_running_turn_ends() {
        tokio::time::pause();
        let mut rig = Rig::start(1, 2).await;
        let turn = rig.ask("sleep 2987").await;
        rig.until_busy(1).await;
        let counters = Arc::new(Counters::default());
        counters.turn_started();
        let ending = counters.clone();
        actix::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            ending.turn_ended(TurnResult::Completed);
        });
        let sessions = sessions(&counters, Duration::from_secs(10));
        let draining = Draining::default();

        let start = Instant::now();
        let unfinished = drain(Work {
            draining: draining.clone(),
            sessions: Some(sessions),
            pool: Some(pool(&rig, true, Duration::from_secs(10))),
        })
        .await;
        assert!(
            at_about(start.elapsed(), Duration::from_millis(2987)),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(unfinished, Unfinished::default());
        assert!(draining.is_draining());
        assert_eq!(rig.end_of(turn).await, done());
        assert!(
            rig.try_ask("late").await.is_err(),
            "the pool stopped taking"
        );
    }

    #[actix::test]
    async fn what_outlasts_the_grace_is_given_back() {
        tokio::time::pause();
        let rig = Rig::start(2, 1).await;
        let slow = rig.ask("sleep 60000").await;
        let quick = rig.ask("sleep 500").await;
        let mut status = rig.status.clone();
        status.wait_for(|status| status.busy == 2).await.unwrap();

        let start = Instant::now();
        let unfinished = drain(Work {
            draining: Draining::default(),
            sessions: None,
            pool: Some(pool(&rig, true, Duration::from_secs(2))),
        })
        .await;
        assert!(at_about(start.elapsed(), Duration::from_secs(2)));
        assert_eq!(
            unfinished,
            Unfinished {
                turns: 0,
                given_back: 1
            }
        );
        assert_eq!(status.borrow().busy, 0);
        let settled = rig.broker.settled();
        assert_eq!(
            settled,
            vec![(quick, Settled::Acked), (slow, Settled::Requeued)]
        );
    }

    #[actix::test]
    async fn a_pool_with_an_unshared_queue_answers_its_sessions_to_the_end() {
        tokio::time::pause();
        let mut rig = Rig::start(1, 1).await;
        let counters = rig.counters.clone();
        let first = rig.ask("sleep 1000").await;
        let second = rig.ask("sleep 1000").await;
        counters.turn_started();
        counters.turn_started();
        rig.until_busy(1).await;

        let stopping = drain(Work {
            draining: Draining::default(),
            sessions: Some(sessions(&counters, Duration::from_secs(10))),
            pool: Some(pool(&rig, false, Duration::from_secs(10))),
        });
        let stopping = actix::spawn(stopping);
        // Stand in for the sessions: each answered turn ends.
        for turn in [first, second] {
            assert_eq!(rig.end_of(turn).await, done());
            counters.turn_ended(TurnResult::Completed);
        }
        let unfinished = stopping.await.unwrap();
        assert_eq!(unfinished, Unfinished::default());
    }
}
