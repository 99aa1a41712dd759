//! What the gateway logs about a turn, all inside the turn's `turn` span (fields
//! `session_id`, `turn_id`, `attempt`), so one turn id finds every line of it, and
//! the worker's lines too. At the default `info` level a turn logs two lines, when
//! it is accepted and when it ends; its chunks and restarts log at `debug`.
//!
//! The session keeps the span in its running turn, and its lines name the span as
//! their parent rather than entering it: a line filtered out then costs nothing,
//! where entering would cost on every chunk.

use std::time::Duration;

use tracing::Span;
use uuid::Uuid;

use super::reassembly::TurnEnd;
use crate::conversation::FinishReason;
use crate::telemetry;

/// The span of one turn's work at the gateway. `attempt` is the delivery whose
/// answer is passed on; a turn that restarts elsewhere gets a new span.
pub fn turn_span(session_id: Uuid, turn_id: Uuid, attempt: u32) -> Span {
    // A root span: a turn's lines never show inside another turn's span.
    tracing::info_span!(parent: None, "turn", %session_id, %turn_id, attempt)
}

/// Logs, inside the turn's `span`, that it was accepted; `via` is `ws` or `http`.
pub fn turn_accepted(span: &Span, via: &'static str) {
    tracing::info!(parent: span, %via, "turn accepted");
}

/// Logs, inside the turn's `span`, that it ended and how.
pub fn turn_ended(span: &Span, end: &TurnEnd, duration: Duration, chunks: u64) {
    let duration_ms = telemetry::millis(duration);
    match end {
        TurnEnd::Finished(finish_reason) => {
            let outcome = finish_reason_name(*finish_reason);
            tracing::info!(parent: span, %outcome, duration_ms, chunks, "turn ended");
        }
        TurnEnd::Failed(error) => {
            let (code, message) = (error.code, &error.message);
            tracing::info!(
                parent: span,
                outcome = %"error",
                %code,
                message,
                duration_ms,
                chunks,
                "turn ended"
            );
        }
    }
}

/// The wire name of a finish reason (`done` frames carry it).
fn finish_reason_name(finish_reason: FinishReason) -> &'static str {
    match finish_reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reasons_are_logged_by_their_wire_name() {
        for reason in [
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::Cancelled,
        ] {
            let wire = serde_json::to_value(reason).unwrap();
            assert_eq!(wire, finish_reason_name(reason));
        }
    }
}
