//! Letting go of a session another gateway took over (see
//! [`HandoverActor`](crate::actors::handover)): the socket closes (1008), the
//! turns stop here without an outcome — pending in storage, so the new holder asks
//! them again — and the session leaves memory, storing nothing more.

use std::time::Duration;

use actix::prelude::*;

use super::SessionActor;
use super::connection::Goodbye;
use crate::actors::registry::Unregister;
use crate::conversation::{ChatError, ErrorCode};
use crate::protocol::ServerFrame;

/// The longest a session given away waits for its close frame to go out.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Another gateway holds this session now: let go of it. Answered once the socket
/// is closing and the session is leaving (it stops once the close frame is out).
#[derive(Message)]
#[rtype(result = "()")]
pub struct GiveAway;

impl Handler<GiveAway> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: GiveAway, ctx: &mut Self::Context) {
        tracing::debug!(session_id = %self.id, "letting go of a session another gateway took");
        if let Some(deadline) = self.turn_deadline.take() {
            ctx.cancel_future(deadline);
        }
        if let Some(turn) = self.turns.end() {
            // Its worker goes on until its answers find no route (or it ends); asking
            // it to cancel would cancel the new holder's attempt of the same turn too.
            self.forget_worker(turn.turn_id);
            let message = "this conversation was opened elsewhere; the answer continues there";
            let error = ChatError::new(ErrorCode::Unavailable, message);
            turn.tell_listener(ServerFrame::failed(Some(turn.turn_id), error));
        }
        // Waiting turns go with their listeners, whose streams end with an error.
        self.turns.drop_all_waiting();
        self.cancel_idle_timer(ctx);
        // Found no more from now on, though it lives until its close frame is out.
        self.deps.registry.do_send(Unregister {
            session_id: self.id,
            session: ctx.address(),
        });
        match self.connection.take() {
            Some(connection) => {
                connection.close(Goodbye::Replaced);
                self.leaving = true;
                // Should the socket never finish closing.
                ctx.run_later(CLOSE_WAIT, |_, ctx| ctx.stop());
            }
            None => ctx.stop(),
        }
    }
}
