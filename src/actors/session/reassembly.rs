//! Putting one turn's answer back together from the answers the broker delivers.
//!
//! A question may be delivered more than once (its worker died and the broker gave
//! it to another); every delivery numbers its chunks from 0. Only the newest
//! delivery counts: once a later one speaks, what the earlier ones said is void
//! and the client is told to discard it (`reset`, see `docs/protocol.md`).

use crate::broker::AnswerBody;
use crate::conversation::{ChatError, FinishReason};

/// The answer of the running turn so far.
#[derive(Debug)]
pub struct Reassembly {
    /// The delivery whose chunks are being passed on.
    attempt: u32,
    next_seq: u64,
    answer: String,
}

/// What one answer means for the turn.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// A later delivery took over after chunks of an earlier one were passed on:
    /// the client must discard them before [`Outcome::step`].
    pub reset: bool,
    pub step: Step,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to pass on: a late answer of an abandoned delivery, or a duplicate.
    Ignore,
    /// The next piece of the answer.
    Chunk { seq: u64, text: String },
    /// The turn is over.
    End(TurnEnd),
    /// Chunks before `got` went missing; the answer cannot be completed.
    Gap { expected: u64, got: u64 },
}

/// How a turn ended.
#[derive(Debug, PartialEq, Eq)]
pub enum TurnEnd {
    Finished(FinishReason),
    Failed(ChatError),
}

impl Default for Reassembly {
    fn default() -> Self {
        Self {
            attempt: 1,
            next_seq: 0,
            answer: String::new(),
        }
    }
}

impl Reassembly {
    /// Takes the answer `body` of delivery `attempt`.
    pub fn accept(&mut self, attempt: u32, body: AnswerBody) -> Outcome {
        if attempt < self.attempt {
            return Outcome::plain(Step::Ignore);
        }
        let mut reset = false;
        if attempt > self.attempt {
            reset = self.next_seq > 0;
            self.attempt = attempt;
            self.next_seq = 0;
            self.answer.clear();
        }
        let step = match body {
            AnswerBody::Chunk { seq, text } => self.chunk(seq, text),
            AnswerBody::Done { finish_reason } => Step::End(TurnEnd::Finished(finish_reason)),
            AnswerBody::Error(error) => Step::End(TurnEnd::Failed(error)),
        };
        Outcome { reset, step }
    }

    fn chunk(&mut self, seq: u64, text: String) -> Step {
        if seq < self.next_seq {
            return Step::Ignore;
        }
        if seq > self.next_seq {
            return Step::Gap {
                expected: self.next_seq,
                got: seq,
            };
        }
        self.next_seq += 1;
        self.answer.push_str(&text);
        Step::Chunk { seq, text }
    }

    /// The delivery whose chunks are passed on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How many chunks of that delivery were passed on.
    pub fn chunks(&self) -> u64 {
        self.next_seq
    }

    /// The answer text passed on (of the newest delivery only).
    pub fn into_answer(self) -> String {
        self.answer
    }
}

impl Outcome {
    fn plain(step: Step) -> Self {
        Self { reset: false, step }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::ErrorCode;

    fn chunk(seq: u64, text: &str) -> AnswerBody {
        AnswerBody::Chunk {
            seq,
            text: text.into(),
        }
    }

    fn passed(seq: u64, text: &str) -> Outcome {
        Outcome::plain(Step::Chunk {
            seq,
            text: text.into(),
        })
    }

    fn done() -> AnswerBody {
        AnswerBody::Done {
            finish_reason: FinishReason::Stop,
        }
    }

    #[test]
    fn chunks_in_order_pass_on_and_build_the_answer() {
        let mut turn = Reassembly::default();
        assert_eq!(turn.accept(1, chunk(0, "Hel")), passed(0, "Hel"));
        assert_eq!(turn.accept(1, chunk(1, "lo")), passed(1, "lo"));
        assert_eq!(
            turn.accept(1, done()),
            Outcome::plain(Step::End(TurnEnd::Finished(FinishReason::Stop)))
        );
        assert_eq!(turn.into_answer(), "Hello");
    }

    #[test]
    fn an_error_ends_the_turn_with_its_code() {
        let mut turn = Reassembly::default();
        let error = ChatError::new(ErrorCode::Upstream, "the model failed");
        assert_eq!(
            turn.accept(1, AnswerBody::Error(error.clone())),
            Outcome::plain(Step::End(TurnEnd::Failed(error)))
        );
    }

    #[test]
    fn a_duplicate_chunk_is_ignored() {
        let mut turn = Reassembly::default();
        turn.accept(1, chunk(0, "a"));
        turn.accept(1, chunk(1, "b"));
        assert_eq!(turn.accept(1, chunk(1, "b")), Outcome::plain(Step::Ignore));
        assert_eq!(turn.accept(1, chunk(0, "a")), Outcome::plain(Step::Ignore));
        assert_eq!(turn.into_answer(), "ab");
    }

    #[test]
    fn a_missing_chunk_is_a_gap() {
        let mut turn = Reassembly::default();
        turn.accept(1, chunk(0, "a"));
        assert_eq!(
            turn.accept(1, chunk(2, "c")),
            Outcome::plain(Step::Gap {
                expected: 1,
                got: 2
            })
        );
        assert_eq!(turn.into_answer(), "a");
    }

    #[test]
    fn a_later_delivery_after_chunks_resets_and_counts_from_zero() {
        let mut turn = Reassembly::default();
        turn.accept(1, chunk(0, "lost "));
        turn.accept(1, chunk(1, "half"));
        assert_eq!(
            turn.accept(2, chunk(0, "whole")),
            Outcome {
                reset: true,
                step: Step::Chunk {
                    seq: 0,
                    text: "whole".into()
                }
            }
        );
        assert_eq!(turn.accept(2, chunk(1, " answer")), passed(1, " answer"));
        assert_eq!(turn.into_answer(), "whole answer");
    }

    #[test]
    fn a_later_delivery_before_any_chunk_needs_no_reset() {
        let mut turn = Reassembly::default();
        assert_eq!(turn.accept(2, chunk(0, "first")), passed(0, "first"));
    }

    #[test]
    fn a_later_delivery_that_ends_at_once_resets_first() {
        let mut turn = Reassembly::default();
        turn.accept(1, chunk(0, "void"));
        let outcome = turn.accept(3, done());
        assert!(outcome.reset);
        assert_eq!(
            outcome.step,
            Step::End(TurnEnd::Finished(FinishReason::Stop))
        );
        assert_eq!(turn.into_answer(), "");
    }

    #[test]
    fn answers_of_an_abandoned_delivery_are_ignored() {
        let mut turn = Reassembly::default();
        turn.accept(2, chunk(0, "new"));
        assert_eq!(
            turn.accept(1, chunk(1, "old")),
            Outcome::plain(Step::Ignore)
        );
        assert_eq!(turn.accept(1, done()), Outcome::plain(Step::Ignore));
        assert_eq!(turn.accept(2, chunk(1, "er")), passed(1, "er"));
        assert_eq!(turn.into_answer(), "newer");
    }
}
