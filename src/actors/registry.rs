//! `SessionRegistry`: which session id lives at which address. Each session owns
//! its own state and registers itself when it starts and leaves when it stops.
//! Knowing every session, the registry also paces their heartbeats with one timer,
//! and keeps the sessions in memory within `session.max_in_memory` and the idle ones
//! within `session.max_idle_bytes`: sessions tell it when they become idle and busy
//! again, and beyond a bound the one idle the longest is told to leave memory (it is
//! stored; a client that comes back loads it).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::prelude::*;
use uuid::Uuid;

use std::time::Duration;

use super::idle_sessions::IdleSessions;
use super::session::{GoingAway, Heartbeat, LeaveMemory, SessionActor};

pub struct SessionRegistry {
    sessions: HashMap<Uuid, Listed>,
    /// How many sessions are in memory, for whoever decides on new ones.
    live: Arc<AtomicUsize>,
    idle: IdleSessions,
    max_in_memory: usize,
    max_idle_bytes: usize,
    heartbeat_interval: Duration,
}

impl SessionRegistry {
    pub fn new(heartbeat_interval: Duration, max_in_memory: usize, max_idle_bytes: usize) -> Self {
        Self {
            max_idle_bytes,
            sessions: HashMap::new(),
            live: Arc::default(),
            idle: IdleSessions::default(),
            max_in_memory,
            heartbeat_interval,
        }
    }

    /// The number of sessions in memory, kept up to date from now on.
    pub fn live_sessions(&self) -> Arc<AtomicUsize> {
        self.live.clone()
    }

    fn count_sessions(&self) {
        self.live.store(self.sessions.len(), Ordering::Relaxed);
    }

    /// Sends idle sessions out of memory, the longest idle first, until the
    /// sessions held, and the bytes the idle ones hold, are within the bounds (or
    /// none is idle: busy ones stay).
    fn keep_within_bound(&mut self) {
        while self.sessions.len() > self.max_in_memory || self.idle.bytes() > self.max_idle_bytes {
            let Some(session_id) = self.idle.take_oldest() else {
                return;
            };
            if let Some(listed) = self.sessions.remove(&session_id) {
                // Once per session sent away, and only beyond the bound.
                listed.session.do_send(LeaveMemory);
            }
        }
        self.count_sessions();
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Sessions register and leave at the rate users connect; a large mailbox
        // keeps a connection burst from blocking handlers.
        ctx.set_mailbox_capacity(65_536);
        ctx.run_interval(self.heartbeat_interval, |registry, _| {
            for listed in registry.sessions.values() {
                // One tiny message per session per interval: a steady trickle.
                listed.session.do_send(Heartbeat);
            }
        });
    }
}

/// A session started and can be found under its id.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub session_id: Uuid,
    pub session: Addr<SessionActor>,
    /// The user it belongs to, if any (see [`Find`]).
    pub owner: Option<String>,
}

/// A live session and the user it belongs to.
#[derive(Clone)]
pub struct Listed {
    pub session: Addr<SessionActor>,
    /// Kept here rather than asked of the session, so that a client naming
    /// another user's session is turned away without the session hearing of it.
    pub owner: Option<String>,
}

/// A session stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    pub session_id: Uuid,
    /// Which actor: a session sent out of memory may have been loaded back, as
    /// another actor, by the time it says it stopped.
    pub session: Addr<SessionActor>,
}

/// Where the session with this id lives, if it is alive.
#[derive(Message)]
#[rtype(result = "Option<Addr<SessionActor>>")]
pub struct Lookup {
    pub session_id: Uuid,
}

/// The session with this id, if it is alive, with its owner.
#[derive(Message)]
#[rtype(result = "Option<Listed>")]
pub struct Find {
    pub session_id: Uuid,
}

/// A session has no connection and no turn now (`idle: true`), or has one again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Idle {
    pub session_id: Uuid,
    pub idle: bool,
    /// The bytes of conversation it holds.
    pub bytes: usize,
}

crate::counted_messages!(SessionRegistry => Register, Unregister, Lookup, Find, Idle, CloseAllSessions);

impl Handler<Register> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, message: Register, _: &mut Self::Context) {
        let listed = Listed {
            session: message.session,
            owner: message.owner,
        };
        self.sessions.insert(message.session_id, listed);
        self.keep_within_bound();
    }
}

impl Handler<Unregister> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, message: Unregister, _: &mut Self::Context) {
        let Unregister {
            session_id,
            session,
        } = message;
        if self.sessions.get(&session_id).map(|listed| &listed.session) == Some(&session) {
            self.sessions.remove(&session_id);
            self.idle.no_longer_idle(session_id);
            self.count_sessions();
        }
    }
}

impl Handler<Idle> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, message: Idle, _: &mut Self::Context) {
        if !self.sessions.contains_key(&message.session_id) {
            return; // sent away already
        }
        if message.idle {
            self.idle.became_idle(message.session_id, message.bytes);
            self.keep_within_bound();
        } else {
            self.idle.no_longer_idle(message.session_id);
        }
    }
}

impl Handler<Lookup> for SessionRegistry {
    type Result = Option<Addr<SessionActor>>;

    fn handle(&mut self, message: Lookup, _: &mut Self::Context) -> Self::Result {
        self.live(message.session_id)
            .map(|listed| listed.session.clone())
    }
}

impl Handler<Find> for SessionRegistry {
    type Result = Option<Listed>;

    fn handle(&mut self, message: Find, _: &mut Self::Context) -> Self::Result {
        self.live(message.session_id).cloned()
    }
}

impl SessionRegistry {
    fn live(&self, session_id: Uuid) -> Option<&Listed> {
        self.sessions
            .get(&session_id)
            .filter(|listed| listed.session.connected())
    }
}

/// The process is stopping: every session closes its socket.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseAllSessions;

impl Handler<CloseAllSessions> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, _: CloseAllSessions, _: &mut Self::Context) {
        for listed in self.sessions.values() {
            // Once per session, at shutdown: nothing piles up.
            listed.session.do_send(GoingAway);
        }
    }
}
