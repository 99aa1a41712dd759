//! `SessionRegistry`: which session id lives at which address. Each session owns
//! its own state and registers itself when it starts and leaves when it stops.
//! Knowing every session, the registry also paces their heartbeats with one timer.

use std::collections::HashMap;

use actix::prelude::*;
use uuid::Uuid;

use std::time::Duration;

use super::session::{GoingAway, Heartbeat, SessionActor};

pub struct SessionRegistry {
    sessions: HashMap<Uuid, Addr<SessionActor>>,
    heartbeat_interval: Duration,
}

impl SessionRegistry {
    pub fn new(heartbeat_interval: Duration) -> Self {
        Self {
            sessions: HashMap::new(),
            heartbeat_interval,
        }
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Sessions register and leave at the rate users connect; a large mailbox
        // keeps a connection burst from blocking handlers.
        ctx.set_mailbox_capacity(65_536);
        ctx.run_interval(self.heartbeat_interval, |registry, _| {
            for session in registry.sessions.values() {
                // One tiny message per session per interval: a steady trickle.
                session.do_send(Heartbeat);
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
}

/// A session stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    pub session_id: Uuid,
}

/// Where the session with this id lives, if it is alive.
#[derive(Message)]
#[rtype(result = "Option<Addr<SessionActor>>")]
pub struct Lookup {
    pub session_id: Uuid,
}

crate::counted_messages!(SessionRegistry => Register, Unregister, Lookup, CloseAllSessions);

impl Handler<Register> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, message: Register, _: &mut Self::Context) {
        self.sessions.insert(message.session_id, message.session);
    }
}

impl Handler<Unregister> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, message: Unregister, _: &mut Self::Context) {
        self.sessions.remove(&message.session_id);
    }
}

impl Handler<Lookup> for SessionRegistry {
    type Result = Option<Addr<SessionActor>>;

    fn handle(&mut self, message: Lookup, _: &mut Self::Context) -> Self::Result {
        self.sessions
            .get(&message.session_id)
            .filter(|addr| addr.connected())
            .cloned()
    }
}

/// The process is stopping: every session closes its socket.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseAllSessions;

impl Handler<CloseAllSessions> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, _: CloseAllSessions, _: &mut Self::Context) {
        for session in self.sessions.values() {
            // Once per session, at shutdown: nothing piles up.
            session.do_send(GoingAway);
        }
    }
}
