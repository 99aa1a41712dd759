//! Checking answers against the mock model (`parlor-mock-llm`) from outside.
//!
//! Every message of session `i` carries the session's token `lt<run>s<i>`. The mock
//! echoes the last user message, so every answer holds its own session's token, and
//! a chunk that holds another session's token can only have been misrouted.

use parlor_mock_llm::expected_answer;

/// The token that marks every message of one session of one run.
#[derive(Clone, Debug)]
pub struct SessionToken {
    /// `lt<run>s`: the part that every session of this run shares.
    prefix: String,
    index: u64,
    /// `lt<run>s<index>`.
    token: String,
}

impl SessionToken {
    pub fn new(run_id: &str, index: u64) -> Self {
        let prefix = format!("lt{run_id}s");
        let token = format!("{prefix}{index}");
        SessionToken {
            prefix,
            index,
            token,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// The text of this session's `turn`th message, with `filler_words` extra words
    /// so the answer streams in more chunks.
    pub fn message(&self, turn: u32, filler_words: usize) -> String {
        let mut text = format!("{} turn {turn}", self.token);
        text.reserve(filler_words * 6);
        for word in 0..filler_words {
            text.push_str(FILLER[word % FILLER.len()]);
        }
        text
    }

    /// How many tokens of *other* sessions of this run `text` holds.
    pub fn foreign_tokens(&self, text: &str) -> u64 {
        let mut found = 0;
        let mut rest = text;
        while let Some(at) = rest.find(self.prefix.as_str()) {
            rest = &rest[at + self.prefix.len()..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                continue;
            }
            // More digits than a u64 holds is surely not ours either.
            match rest[..digits].parse::<u64>() {
                Ok(index) if index == self.index => {}
                _ => found += 1,
            }
            rest = &rest[digits..];
        }
        found
    }
}

const FILLER: [&str; 8] = [
    " alpha", " bravo", " charlie", " delta", " echo", " foxtrot", " golf", " hotel",
];

/// Whether `answer` is the mock's answer to `message` as the conversation's
/// `turn`th user message.
pub fn is_expected_answer(answer: &str, message: &str, turn: u32) -> bool {
    answer == expected_answer(message, turn as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parlor_mock_llm::answer_chunks;

    #[test]
    fn the_right_answer_passes() {
        let token = SessionToken::new("ab12", 7);
        let message = token.message(2, 3);
        assert_eq!(message, "ltab12s7 turn 2 alpha bravo charlie");
        let answer = format!("You said: \"{message}\" (turn 2)");
        assert!(is_expected_answer(&answer, &message, 2));
    }

    #[test]
    fn a_wrong_answer_or_turn_number_fails() {
        let token = SessionToken::new("ab12", 7);
        let message = token.message(2, 0);
        let wrong_turn = format!("You said: \"{message}\" (turn 1)");
        assert!(!is_expected_answer(&wrong_turn, &message, 2));
        let truncated = "You said: \"lt";
        assert!(!is_expected_answer(truncated, &message, 2));
        let other = format!("You said: \"{}\" (turn 2)", token.message(3, 0));
        assert!(!is_expected_answer(&other, &message, 2));
    }

    #[test]
    fn a_foreign_token_is_a_violation() {
        let token = SessionToken::new("ab12", 7);
        let own = token.message(1, 0);
        let answer = expected_answer(&own, 1);
        for chunk in answer_chunks(&answer) {
            assert_eq!(token.foreign_tokens(chunk), 0, "{chunk:?}");
        }
        let stranger = SessionToken::new("ab12", 71);
        let stray = expected_answer(&stranger.message(1, 0), 1);
        let found: u64 = answer_chunks(&stray).map(|c| token.foreign_tokens(c)).sum();
        assert_eq!(found, 1);
        assert_eq!(token.foreign_tokens("\"ltab12s70 x ltab12s7 ltab12s8"), 2);
    }

    #[test]
    fn other_runs_and_bare_prefixes_are_ignored() {
        let token = SessionToken::new("ab12", 7);
        assert_eq!(token.foreign_tokens("ltcd34s3 ltab12s ltab12sx"), 0);
        assert_eq!(token.foreign_tokens("ltab12s99999999999999999999999"), 1);
    }
}
