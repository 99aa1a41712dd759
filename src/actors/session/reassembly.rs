//! Putting one turn's answer back together from the answers the broker delivers.
//!
//! A question may be delivered more than once (its worker died and the broker gave
//! it to another); every delivery numbers its chunks from 0. Only the newest
//! delivery counts: once a later one speaks, what the earlier ones said is void
//! and the client is told to discard it (`reset`, see `docs/protocol.md`).
//!
//! A worker numbers its chunks and events together (the broker's `seq`), so a
//! lost or repeated one of either kind is noticed; the chunk frames' own `seq`,
//! counting chunks only, is made here.

use crate::broker::AnswerBody;
use crate::conversation::{ChatError, FinishReason, TurnEvent};

/// The answer of the running turn so far.
#[derive(Debug)]
pub struct Reassembly {
    /// The delivery whose chunks are being passed on.
    attempt: u32,
    /// The broker `seq` expected next (chunks and events).
    next_seq: u64,
    /// How many chunks were passed on: the next chunk frame's `seq`.
    chunks: u64,
    /// Everything passed on, in order, so that a client that comes back mid-turn
    /// can be shown the turn from its start.
    passed: Vec<Passed>,
}

/// A piece of the turn that was passed on.
#[derive(Clone, Debug, PartialEq)]
pub enum Passed {
    Chunk(String),
    Event(TurnEvent),
}

/// What one answer means for the turn.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// A later delivery took over after chunks of an earlier one were passed on:
    /// the client must discard them before [`Outcome::step`].
    pub reset: bool,
    pub step: Step,
}

#[derive(Debug, PartialEq)]
pub enum Step {
    /// Nothing to pass on: a late answer of an abandoned delivery, or a duplicate.
    Ignore,
    /// The next piece of the answer; `seq` counts chunks only.
    Chunk { seq: u64, text: String },
    /// A tool at work, the passages found, or reasoning.
    Event(TurnEvent),
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
            chunks: 0,
            passed: Vec::new(),
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
            // Events passed on are void too, so they also call for a reset.
            reset = self.next_seq > 0;
            self.attempt = attempt;
            self.next_seq = 0;
            self.chunks = 0;
            self.passed.clear();
        }
        let step = match body {
            AnswerBody::Chunk { seq, text } => self.out_of_order(seq).unwrap_or_else(|| {
                self.passed.push(Passed::Chunk(text.clone()));
                self.chunks += 1;
                Step::Chunk {
                    seq: self.chunks - 1,
                    text,
                }
            }),
            AnswerBody::Event { seq, event } => self.out_of_order(seq).unwrap_or_else(|| {
                self.passed.push(Passed::Event(event.clone()));
                Step::Event(event)
            }),
            AnswerBody::Done { finish_reason } => Step::End(TurnEnd::Finished(finish_reason)),
            AnswerBody::Error(error) => Step::End(TurnEnd::Failed(error)),
        };
        Outcome { reset, step }
    }

    /// What to do instead when the answer numbered `seq` is not the one expected
    /// next; `None` (and the next one is expected) when it is.
    fn out_of_order(&mut self, seq: u64) -> Option<Step> {
        if seq < self.next_seq {
            return Some(Step::Ignore);
        }
        if seq > self.next_seq {
            return Some(Step::Gap {
                expected: self.next_seq,
                got: seq,
            });
        }
        self.next_seq += 1;
        None
    }

    /// The delivery whose chunks are passed on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How many chunks of that delivery were passed on.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// What was passed on of the newest delivery, in order: chunk `n` of it is the
    /// `n`th [`Passed::Chunk`].
    pub fn passed(&self) -> &[Passed] {
        &self.passed
    }

    /// The answer text passed on (of the newest delivery only).
    pub fn into_answer(self) -> String {
        self.passed
            .into_iter()
            .filter_map(|passed| match passed {
                Passed::Chunk(text) => Some(text),
                Passed::Event(_) => None,
            })
            .collect()
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

    fn event(seq: u64, text: &str) -> AnswerBody {
        AnswerBody::Event {
            seq,
            event: TurnEvent::Reasoning { text: text.into() },
        }
    }

    fn passed_event(text: &str) -> Outcome {
        Outcome::plain(Step::Event(TurnEvent::Reasoning { text: text.into() }))
    }

    #[test]
    fn events_share_the_numbering_but_not_the_chunk_seq_or_the_answer() {
        let mut turn = Reassembly::default();
        assert_eq!(turn.accept(1, event(0, "think")), passed_event("think"));
        assert_eq!(turn.accept(1, chunk(1, "a")), passed(0, "a"));
        assert_eq!(turn.accept(1, event(2, "more")), passed_event("more"));
        assert_eq!(turn.accept(1, chunk(3, "b")), passed(1, "b"));
        assert_eq!(
            turn.accept(1, event(2, "more")),
            Outcome::plain(Step::Ignore)
        );
        assert_eq!(turn.chunks(), 2);
        let thought = |text: &str| Passed::Event(TurnEvent::Reasoning { text: text.into() });
        assert_eq!(
            turn.passed(),
            [
                thought("think"),
                Passed::Chunk("a".into()),
                thought("more"),
                Passed::Chunk("b".into())
            ]
        );
        assert_eq!(turn.into_answer(), "ab");
    }

    #[test]
    fn a_lost_event_is_a_gap() {
        let mut turn = Reassembly::default();
        turn.accept(1, event(0, "a"));
        assert_eq!(
            turn.accept(1, chunk(2, "c")),
            Outcome::plain(Step::Gap {
                expected: 1,
                got: 2
            })
        );
    }

    #[test]
    fn a_later_delivery_after_events_only_resets() {
        let mut turn = Reassembly::default();
        turn.accept(1, event(0, "void"));
        let outcome = turn.accept(2, chunk(0, "x"));
        assert!(outcome.reset);
        assert_eq!(
            outcome.step,
            Step::Chunk {
                seq: 0,
                text: "x".into()
            }
        );
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
