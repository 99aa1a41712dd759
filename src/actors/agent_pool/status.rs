//! What the pool tells of its load: the turn slots it has and uses, and whether it
//! takes questions, asked for once or watched as it changes.

use actix::prelude::*;
use serde::Serialize;
use tokio::sync::watch;

use super::{AgentPool, Taking};

impl AgentPool {
    pub(super) fn publish_status(&self) {
        let status = PoolStatus {
            size: self.settings.turn_slots(),
            busy: self.busy(),
            taking: matches!(self.questions, Taking::Idle(_) | Taking::Pulling(_)),
        };
        self.counters.pool_status(status.size, status.busy);
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    fn busy(&self) -> usize {
        self.workers.iter().map(|record| record.turns.len()).sum()
    }
}

/// The pool's size and load, for `/admin/stats` and readiness.
#[derive(Message)]
#[rtype(result = "PoolStatus")]
pub struct GetPoolStatus;

/// Turn slots: `size` turns can run at once, `busy` run now; `taking` while the
/// pool takes questions from the broker (it started consuming and was not stopped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, MessageResponse)]
pub struct PoolStatus {
    pub size: usize,
    pub busy: usize,
    pub taking: bool,
}

impl Handler<GetPoolStatus> for AgentPool {
    type Result = PoolStatus;

    fn handle(&mut self, _: GetPoolStatus, _: &mut Self::Context) -> Self::Result {
        *self.status.borrow()
    }
}

/// The pool's status as it changes, for whoever waits for its turns to end.
#[derive(Message)]
#[rtype(result = "PoolStatusWatch")]
pub struct WatchPoolStatus;

#[derive(MessageResponse)]
pub struct PoolStatusWatch(pub watch::Receiver<PoolStatus>);

impl Handler<WatchPoolStatus> for AgentPool {
    type Result = PoolStatusWatch;

    fn handle(&mut self, _: WatchPoolStatus, _: &mut Self::Context) -> Self::Result {
        PoolStatusWatch(self.status.subscribe())
    }
}
