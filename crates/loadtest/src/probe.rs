//! What a driver tells about one turn as its frames arrive: timings, the answer
//! text, stray chunks. One probe per session, reused turn after turn, so a turn
//! costs no allocation once the buffers have grown to an answer's size.

use std::time::Duration;

use tokio::time::Instant;

use super::checker::SessionToken;
use super::stats::TurnRecord;

/// Answers longer than this are cut (and so count as wrong): a server that never
/// stops talking must not make the load tester grow without bound.
const MAX_ANSWER_BYTES: usize = 1 << 20;

pub struct TurnProbe {
    token: SessionToken,
    /// When the turn counts as started: its send time, or for the first turn of an
    /// open-loop session the session's intended start.
    started: Instant,
    first_chunk: Option<Instant>,
    last_chunk: Option<Instant>,
    itl_micros: Vec<u64>,
    answer: String,
    truncated: bool,
    chunks: u64,
    violations: u64,
    resets: u64,
}

impl TurnProbe {
    pub fn new(token: SessionToken) -> Self {
        TurnProbe {
            token,
            started: Instant::now(),
            first_chunk: None,
            last_chunk: None,
            itl_micros: Vec::new(),
            answer: String::new(),
            truncated: false,
            chunks: 0,
            violations: 0,
            resets: 0,
        }
    }

    pub fn token(&self) -> &SessionToken {
        &self.token
    }

    /// Starts measuring a new turn.
    pub fn begin(&mut self, started: Instant) {
        self.started = started;
        self.first_chunk = None;
        self.last_chunk = None;
        self.itl_micros.clear();
        self.answer.clear();
        self.truncated = false;
        self.chunks = 0;
        self.violations = 0;
        self.resets = 0;
    }

    /// A chunk of the turn in flight arrived.
    pub fn chunk(&mut self, text: &str) {
        let now = Instant::now();
        match self.last_chunk {
            None => self.first_chunk = Some(now),
            Some(last) => self.itl_micros.push(micros(now - last)),
        }
        self.last_chunk = Some(now);
        self.chunks += 1;
        self.violations += self.token.foreign_tokens(text);
        if self.answer.len() + text.len() <= MAX_ANSWER_BYTES {
            self.answer.push_str(text);
        } else {
            self.truncated = true;
        }
    }

    /// A chunk arrived that belongs to no turn this session has in flight.
    pub fn stray_chunk(&mut self) {
        self.violations += 1;
    }

    /// The turn restarted elsewhere: its answer starts again.
    pub fn reset(&mut self) {
        self.answer.clear();
        self.truncated = false;
        self.resets += 1;
    }

    /// The answer so far, or `None` when it was too long to keep.
    pub fn answer(&self) -> Option<&str> {
        (!self.truncated).then_some(self.answer.as_str())
    }

    /// The turn's numbers, now that it ended well (`error` = `None`) or not.
    pub fn record<'a>(&'a self, error: Option<&'a str>, wrong_answer: bool) -> TurnRecord<'a> {
        let ok = error.is_none();
        TurnRecord {
            ok,
            ttft: self.first_chunk.map(|first| first - self.started),
            itl_micros: &self.itl_micros,
            turn: ok.then(|| Instant::now() - self.started),
            chunks: self.chunks,
            wrong_answer,
            isolation_violations: self.violations,
            resets: self.resets,
            error,
        }
    }
}

fn micros(duration: Duration) -> u64 {
    duration.as_micros().min(u128::from(u64::MAX)) as u64
}
