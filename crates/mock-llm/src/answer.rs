//! The plain answer: what the mock says when no tool is involved.

/// The mock's answer to a conversation whose last user message is
/// `last_user_message` and which holds `turn` user messages.
pub fn expected_answer(last_user_message: &str, turn: usize) -> String {
    format!("You said: \"{last_user_message}\" (turn {turn})")
}

/// How the mock splits an answer into streamed chunks: one word with its trailing
/// space per chunk; their concatenation is the answer. (Reasoning and the answer
/// from tool results are split the same way.)
pub fn answer_chunks(answer: &str) -> impl Iterator<Item = &str> {
    answer.split_inclusive(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_names_the_last_user_message_and_the_turn() {
        assert_eq!(
            expected_answer("second one", 2),
            "You said: \"second one\" (turn 2)"
        );
    }

    #[test]
    fn chunks_are_words_with_their_space() {
        let answer = expected_answer("hello  big world", 3);
        let chunks: Vec<&str> = answer_chunks(&answer).collect();
        assert_eq!(chunks[..3], ["You ", "said: ", "\"hello "]);
        assert_eq!(chunks.concat(), answer);
    }
}
