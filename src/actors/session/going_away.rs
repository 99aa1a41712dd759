//! The end of a gateway's grace period on SIGTERM (docs/protocol.md#stopping): the
//! turns still running or waiting are cut, their clients told so, and the socket
//! closed with 1001.

use actix::prelude::*;

use super::SessionActor;
use super::connection::Goodbye;
use crate::conversation::{ChatError, ErrorCode};
use crate::protocol::ServerFrame;

/// The process is stopping: close the socket (`1001 going away`). Turns still
/// running were given their grace period already.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GoingAway;

impl Handler<GoingAway> for SessionActor {
    type Result = ();

    /// The grace period is over: every turn still here is cut, and its client is
    /// told so before its socket closes or its `POST /chat` stream ends. The turns
    /// stay pending in storage, to be asked again when the session is next loaded
    /// (by another gateway, or this one restarted).
    fn handle(&mut self, _: GoingAway, ctx: &mut Self::Context) {
        let message = "parlor is restarting; ask again in a moment";
        let cut: Vec<ServerFrame> = (self.turns.every_turn())
            .map(|(turn_id, listener)| {
                let error = ChatError::new(ErrorCode::Unavailable, message);
                let frame = ServerFrame::failed(Some(turn_id), error);
                if let Some(listener) = listener {
                    let _ = listener.send(frame.clone());
                }
                frame
            })
            .collect();
        for frame in &cut {
            self.send_to_socket(frame);
        }
        self.say_goodbye(Goodbye::GoingAway, ctx);
    }
}
