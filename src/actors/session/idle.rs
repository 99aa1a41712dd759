//! When a session is idle — no connection, no turn — and what that leads to: after
//! `session.idle_timeout_s` it stops; meanwhile the registry knows it is idle, and
//! may send it out of memory first when the gateway holds more than
//! `session.max_in_memory` sessions. Either way it stays stored, and comes back
//! when its client does.

use actix::prelude::*;

use super::SessionActor;
use crate::actors::registry::{Idle, Register};

impl SessionActor {
    /// Starts counting the idle time of a session with no connection and no turn,
    /// and tells the registry it is idle.
    pub(super) fn arm_idle_timer(&mut self, ctx: &mut Context<Self>) {
        if self.start_idle_timer(ctx) {
            self.tell_registry_idle(true);
        }
    }

    /// Starts the idle timer if the session is idle and it is not running yet;
    /// answers whether it started it.
    pub(super) fn start_idle_timer(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.connection.is_some() || self.turns.running().is_some() || self.idle_timer.is_some()
        {
            return false;
        }
        let timer = ctx.run_later(self.deps.limits.idle_timeout, |actor, ctx| {
            actor.idle_timer = None;
            if actor.connection.is_none() && actor.turns.running().is_none() {
                tracing::debug!(session_id = %actor.id, "session idle; closing it");
                ctx.stop();
            }
        });
        self.idle_timer = Some(timer);
        true
    }

    pub(super) fn cancel_idle_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.idle_timer.take() {
            ctx.cancel_future(timer);
            self.tell_registry_idle(false);
        }
    }

    /// The idle timer runs exactly while the session is idle: the registry hears
    /// of both changes, to choose which sessions leave memory first.
    fn tell_registry_idle(&self, idle: bool) {
        // Twice per connection or turn at most, into the registry's large mailbox.
        self.deps.registry.do_send(Idle {
            session_id: self.id,
            idle,
            bytes: self.history.bytes(),
        });
    }
}

/// The gateway holds too many sessions: leave memory, if still idle (the session
/// is stored; a client that comes back loads it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaveMemory;

impl Handler<LeaveMemory> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: LeaveMemory, ctx: &mut Self::Context) {
        if self.connection.is_none() && self.turns.running().is_none() {
            tracing::debug!(session_id = %self.id, "session leaves memory");
            ctx.stop();
        } else {
            // Busy again since the registry chose it: it stays, and must be found.
            self.deps.registry.do_send(Register {
                session_id: self.id,
                session: ctx.address(),
                owner: self.user_id.clone(),
            });
        }
    }
}
