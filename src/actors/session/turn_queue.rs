//! A session's turns: the one running and those waiting for it, in the order the
//! user sent them. One turn runs at a time so that each sees the ones before it.

use std::collections::VecDeque;
use std::time::Instant;

use tracing::Span;
use uuid::Uuid;

use super::TurnListener;
use super::client_turns::TurnPermit;
use super::reassembly::Reassembly;
use crate::conversation::{ChatError, ErrorCode, UserMessage};
use crate::protocol::ServerFrame;

#[derive(Default)]
pub struct TurnQueue {
    waiting: VecDeque<WaitingTurn>,
    /// Boxed: most sessions are idle most of the time, and each idle byte counts
    /// ten thousand times.
    running: Option<Box<ActiveTurn>>,
}

struct WaitingTurn {
    turn_id: Uuid,
    message: UserMessage,
    listener: Option<TurnListener>,
    span: Span,
}

impl WaitingTurn {
    /// Drops this turn before it started; it ends without a frame.
    fn drop_unstarted(&self) {
        let span = &self.span;
        tracing::info!(parent: span, outcome = %"dropped", "turn ended before it started");
    }
}

/// The turn being answered.
pub struct ActiveTurn {
    pub turn_id: Uuid,
    /// The user's message.
    pub message: UserMessage,
    /// Where a `POST /chat` turn's frames go, besides the socket.
    pub listener: Option<TurnListener>,
    pub started: Instant,
    pub reassembly: Reassembly,
    /// The turn's `turn` span (see [`trace`](super::trace)).
    pub span: Span,
    /// Counts the turn among its client's running turns while it runs.
    _permit: Option<TurnPermit>,
}

impl ActiveTurn {
    /// Passes a frame of this turn to its `POST /chat` listener, if it has one.
    pub fn tell_listener(&self, frame: ServerFrame) {
        if let Some(listener) = &self.listener {
            // A listener that left cancels the turn through its own watch.
            let _ = listener.send(frame);
        }
    }
}

impl TurnQueue {
    /// Takes a user message as a turn, or refuses it with the error code and message
    /// to answer: `unavailable` while the process stops (`draining`), `busy` when a
    /// turn runs and `max_waiting` turns wait for it already. An admitted turn gets
    /// its span from `span_of` its id.
    pub fn admit(
        &mut self,
        message: UserMessage,
        listener: Option<TurnListener>,
        draining: bool,
        max_waiting: usize,
        span_of: impl FnOnce(Uuid) -> Span,
    ) -> Result<Uuid, ChatError> {
        if draining {
            let message = "parlor is shutting down; try again shortly";
            return Err(ChatError::new(ErrorCode::Unavailable, message));
        }
        if self.running.is_some() && self.waiting.len() >= max_waiting {
            let message = format!(
                "{} messages already wait for the running turn; try again when it ends",
                self.waiting.len()
            );
            return Err(ChatError::new(ErrorCode::Busy, message));
        }
        let turn_id = Uuid::new_v4();
        self.waiting.push_back(WaitingTurn {
            turn_id,
            message,
            listener,
            span: span_of(turn_id),
        });
        Ok(turn_id)
    }

    /// Takes back a turn that was accepted before (by a gateway that stopped, died
    /// or gave the session away) and never ended: it waits like any other, beyond
    /// every limit, since it was within them when it was accepted.
    pub fn resume(&mut self, turn_id: Uuid, message: UserMessage, span: Span) {
        self.waiting.push_back(WaitingTurn {
            turn_id,
            message,
            listener: None,
            span,
        });
    }

    /// The turns waiting, in the order they will run: their ids and questions.
    pub fn waiting(&self) -> impl Iterator<Item = (Uuid, &str)> {
        (self.waiting.iter()).map(|turn| (turn.turn_id, turn.message.text.as_str()))
    }

    /// Starts the first waiting turn at `now`, unless a turn runs or none waits;
    /// the turn holds `permit` while it runs.
    pub fn start_next(&mut self, now: Instant, permit: Option<TurnPermit>) -> Option<&ActiveTurn> {
        if self.running.is_some() {
            return None;
        }
        let WaitingTurn {
            turn_id,
            message,
            listener,
            span,
        } = self.waiting.pop_front()?;
        let turn = self.running.insert(Box::new(ActiveTurn {
            turn_id,
            message,
            listener,
            started: now,
            reassembly: Reassembly::default(),
            span,
            _permit: permit,
        }));
        Some(turn)
    }

    /// Every turn, the running one first, with its `POST /chat` listener if any.
    pub fn every_turn(&self) -> impl Iterator<Item = (Uuid, Option<&TurnListener>)> {
        let running = self
            .running()
            .map(|turn| (turn.turn_id, turn.listener.as_ref()));
        let waiting = (self.waiting.iter()).map(|turn| (turn.turn_id, turn.listener.as_ref()));
        running.into_iter().chain(waiting)
    }

    pub fn running(&self) -> Option<&ActiveTurn> {
        self.running.as_deref()
    }

    /// The running turn, if it is `turn_id`.
    pub fn running_mut(&mut self, turn_id: Uuid) -> Option<&mut ActiveTurn> {
        self.running
            .as_deref_mut()
            .filter(|turn| turn.turn_id == turn_id)
    }

    /// The span of turn `turn_id`, running or waiting.
    pub fn span(&self, turn_id: Uuid) -> Option<&Span> {
        let running = self.running().filter(|turn| turn.turn_id == turn_id);
        running.map(|turn| &turn.span).or_else(|| {
            let waiting = self.waiting.iter().find(|turn| turn.turn_id == turn_id);
            waiting.map(|turn| &turn.span)
        })
    }

    pub fn is_running(&self, turn_id: Uuid) -> bool {
        self.running().is_some_and(|turn| turn.turn_id == turn_id)
    }

    /// Ends the running turn, handing it back.
    pub fn end(&mut self) -> Option<Box<ActiveTurn>> {
        self.running.take()
    }

    /// Drops the waiting turn `turn_id` (its `POST /chat` client left); answers
    /// the ids dropped.
    pub fn drop_waiting(&mut self, turn_id: Uuid) -> Vec<Uuid> {
        self.drop_waiting_if(|turn| turn.turn_id == turn_id)
    }

    /// Drops the waiting turns that only the socket watched (it left); answers
    /// their ids.
    pub fn drop_waiting_without_listener(&mut self) -> Vec<Uuid> {
        self.drop_waiting_if(|turn| turn.listener.is_none())
    }

    /// Drops every waiting turn, recording nothing (the session is given away).
    pub fn drop_all_waiting(&mut self) {
        self.drop_waiting_if(|_| true);
    }

    fn drop_waiting_if(&mut self, drop: impl Fn(&WaitingTurn) -> bool) -> Vec<Uuid> {
        let mut dropped = Vec::new();
        self.waiting.retain(|turn| {
            let drops = drop(turn);
            if drops {
                turn.drop_unstarted();
                dropped.push(turn.turn_id);
            }
            !drops
        });
        dropped
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    const MAX_WAITING: usize = 2;

    fn admit(queue: &mut TurnQueue, text: &str) -> Result<Uuid, ChatError> {
        queue.admit(text.into(), None, false, MAX_WAITING, no_span)
    }

    fn no_span(_: Uuid) -> Span {
        Span::none()
    }

    fn start(queue: &mut TurnQueue) -> Option<String> {
        queue
            .start_next(Instant::now(), None)
            .map(|turn| turn.message.text.clone())
    }

    #[test]
    fn turns_run_one_at_a_time_in_order() {
        let mut queue = TurnQueue::default();
        let first = admit(&mut queue, "one").unwrap();
        let second = admit(&mut queue, "two").unwrap();
        assert_ne!(first, second);
        assert_eq!(start(&mut queue).as_deref(), Some("one"));
        assert!(queue.is_running(first));
        assert_eq!(start(&mut queue), None, "one turn runs at a time");

        assert_eq!(queue.end().map(|turn| turn.turn_id), Some(first));
        assert_eq!(start(&mut queue).as_deref(), Some("two"));
        assert!(queue.running_mut(second).is_some());
        assert!(queue.running_mut(first).is_none());
        queue.end();
        assert_eq!(start(&mut queue), None, "nothing waits");
        assert!(queue.running().is_none());
    }

    #[test]
    fn beyond_the_waiting_limit_a_message_gets_busy() {
        let mut queue = TurnQueue::default();
        admit(&mut queue, "running").unwrap();
        start(&mut queue);
        admit(&mut queue, "waits 1").unwrap();
        admit(&mut queue, "waits 2").unwrap();
        let ChatError { code, message } = admit(&mut queue, "one too many").unwrap_err();
        assert_eq!(code, ErrorCode::Busy);
        assert!(message.contains("2 messages"), "{message}");

        queue.end();
        start(&mut queue);
        admit(&mut queue, "room again").unwrap();
    }

    #[test]
    fn an_idle_session_takes_a_turn_even_with_no_room_to_wait() {
        let mut queue = TurnQueue::default();
        assert!(queue.admit("hi".into(), None, false, 0, no_span).is_ok());
        assert_eq!(start(&mut queue).as_deref(), Some("hi"));
        assert_eq!(
            queue
                .admit("next".into(), None, false, 0, no_span)
                .unwrap_err()
                .code,
            ErrorCode::Busy
        );
    }

    #[test]
    fn while_draining_every_message_is_refused() {
        let mut queue = TurnQueue::default();
        let code = queue
            .admit("hi".into(), None, true, MAX_WAITING, no_span)
            .unwrap_err()
            .code;
        assert_eq!(code, ErrorCode::Unavailable);
        assert_eq!(start(&mut queue), None);
    }

    #[test]
    fn a_waiting_turn_whose_listener_left_is_dropped() {
        let mut queue = TurnQueue::default();
        admit(&mut queue, "running").unwrap();
        start(&mut queue);
        let (listener, _frames) = mpsc::unbounded_channel();
        let left = queue
            .admit("left".into(), Some(listener), false, MAX_WAITING, no_span)
            .unwrap();
        admit(&mut queue, "stays").unwrap();
        queue.drop_waiting(left);
        queue.end();
        assert_eq!(start(&mut queue).as_deref(), Some("stays"));
    }

    #[test]
    fn when_the_socket_leaves_only_turns_with_a_listener_wait_on() {
        let mut queue = TurnQueue::default();
        admit(&mut queue, "running").unwrap();
        start(&mut queue);
        admit(&mut queue, "socket only").unwrap();
        let (listener, _frames) = mpsc::unbounded_channel();
        queue
            .admit(
                "over http".into(),
                Some(listener),
                false,
                MAX_WAITING,
                no_span,
            )
            .unwrap();
        queue.drop_waiting_without_listener();
        queue.end();
        assert_eq!(start(&mut queue).as_deref(), Some("over http"));
        queue.end();
        assert_eq!(start(&mut queue), None);
    }

    #[test]
    fn a_turn_keeps_the_span_it_was_admitted_with() {
        let mut queue = TurnQueue::default();
        let admit_with = |queue: &mut TurnQueue, span: fn() -> Span| {
            let span_of = move |_| span();
            queue.admit("hi".into(), None, false, MAX_WAITING, span_of)
        };
        let first = admit_with(&mut queue, || tracing::info_span!("first")).unwrap();
        let second = admit_with(&mut queue, || tracing::info_span!("second")).unwrap();
        start(&mut queue);
        let name = |span: Option<&Span>| span.and_then(Span::metadata).map(|meta| meta.name());
        assert_eq!(name(queue.span(first)), Some("first"), "running");
        assert_eq!(name(queue.span(second)), Some("second"), "waiting");
        let ended = queue.end().unwrap();
        assert_eq!(name(Some(&ended.span)), Some("first"));
        assert_eq!(name(queue.span(first)), None, "an ended turn is gone");
    }

    #[test]
    fn the_listener_gets_the_frames_of_its_turn() {
        let mut queue = TurnQueue::default();
        let (listener, mut frames) = mpsc::unbounded_channel();
        let turn_id = queue
            .admit("hi".into(), Some(listener), false, MAX_WAITING, no_span)
            .unwrap();
        let turn = queue.start_next(Instant::now(), None).unwrap();
        turn.tell_listener(ServerFrame::Accepted { turn_id });
        assert_eq!(frames.try_recv(), Ok(ServerFrame::Accepted { turn_id }));

        drop(frames);
        // A listener that left is no error.
        turn.tell_listener(ServerFrame::Pong);
    }
}
